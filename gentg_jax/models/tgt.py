"""TemporalGraphLimbTransformer (TGT): 2D keypoint sequences -> root-relative 3D poses.

Each frame becomes 17 joint tokens (x, y, score) and, with `use_limb_tokens`, 16 limb tokens (the
bone's 2D vector, length, direction and the lower score of its two joints). `depth`
spatio-temporal layers follow: attention over the tokens of a frame, biased per head by hop
distance in the joint+limb graph, then attention over the frames of each token (of each joint
token only with `limb_temporal=False`: the limb tokens then see time through the joints). Heads
read 3D joints and per-joint uncertainty from the joint tokens and 3D bones from the limb tokens
(without them: the joint head's own bone vectors, or a bone head on the joint tokens with
`limbs_on_joints`). configs/tgt_base.py turns the limb tokens off: at equal training CPU time
on real motion the 17-token network is more accurate (README, Accuracy)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gentg_jax import skeleton
from gentg_jax.models import layers, trunk

_EPS = 1e-6


def limb_features(keypoints_2d: jax.Array, scores: jax.Array) -> jax.Array:
    """Per-limb 2D features (..., 16, 6): vector (2), length (1), direction (2), min score (1)."""
    vectors = skeleton.limb_vectors(keypoints_2d)
    length = jnp.sqrt(jnp.sum(vectors**2, axis=-1, keepdims=True) + _EPS**2)
    score = jnp.minimum(scores[..., skeleton.LIMB_PARENTS], scores[..., skeleton.LIMB_CHILDREN])[
        ..., None
    ]
    return jnp.concatenate([vectors, length, vectors / length, score], axis=-1)


def _graph_hops(use_limb_tokens: bool) -> tuple[tuple[int, ...], ...]:
    hops = skeleton.graph_hop_distances()
    if not use_limb_tokens:
        hops = hops[: skeleton.NUM_JOINTS, : skeleton.NUM_JOINTS]
    return layers.as_nested_tuple(hops)


class TemporalGraphLimbTransformer(nn.Module):
    """The TGT lifter; see the module docstring. Fields mirror config.model (from_config).

    Attributes:
      dim, depth, num_heads, mlp_ratio: transformer size.
      dropout: dropout on embeddings, attention output and MLPs.
      drop_path: stochastic-depth rate of the last layer (linear from 0 at the first).
      max_frames: the longest clip; any T <= max_frames is accepted.
      use_limb_tokens / use_graph_bias / spatial_first: ablation switches.
      limbs_on_joints: with use_limb_tokens=False, embed the limb features anyway and add each
        limb's embedding to the token of the joint it ends at (every non-root joint ends one
        limb); the bone head reads those joint tokens. Limb information at 17 tokens' cost.
      limb_temporal: limb tokens take part in the temporal attention; False (configs/tgt_base.py's
        default): only the 17 joint tokens do (limb tokens are spatial only). True here, so a
        config saved before this field existed restores the network it trained.
      remat: rematerialise each scanned layer in the backward pass.
      scan_unroll: layers per loop iteration of the layer scan; `depth` unrolls fully (same
        params) and also unrolls the attention chunk loops: XLA's cost analysis counts a loop
        body once, so FLOP counts need this.
      dtype: compute dtype name, "float32" or "bfloat16" (params and outputs stay float32).
      attention_impl: "auto" (einsum on the CPU path, cuDNN attention on a GPU where it
        applies, else XLA's: layers.resolve_attention), "einsum" (heads-major, faster on
        XLA:CPU), "xla" or "cudnn" (jax.nn.dot_product_attention).
      attention_chunk_mib: CPU attention chunk size in MiB (layers.Attention.chunk_mib); 0: off.
      log_sigma_range: (min, max) clip of the predicted log sigma (metres), for stability.
      sigma_stop_gradient: the sigma head reads the final joint tokens through a stop-gradient,
        so its loss trains the head alone and cannot pull the trunk away from the joints.
      sigma_hidden: width of a GELU hidden layer in the sigma head; 0: one linear layer.
      cpu_micro_batch_mib: on the CPU path (layers.cpu_paths), outside training, lift the batch
        in a loop over micro-batches (trunk.micro_batched) whose float32 (T, N, dim) token
        activations take about this many MiB (at least one sequence); 0: all at once. Same
        numbers, less time; off while scan_unroll >= depth (FLOP counting).
    """

    dim: int = 256
    depth: int = 8
    num_heads: int = 8
    mlp_ratio: float = 1.5
    dropout: float = 0.0
    drop_path: float = 0.1
    max_frames: int = 243
    use_limb_tokens: bool = True
    limbs_on_joints: bool = False
    use_graph_bias: bool = True
    spatial_first: bool = True
    limb_temporal: bool = True
    remat: bool = True
    scan_unroll: int = 1
    dtype: str = "float32"
    attention_impl: str = "auto"
    attention_chunk_mib: float = 6.0
    log_sigma_range: tuple[float, float] = (-7.0, 1.0)
    sigma_stop_gradient: bool = False
    sigma_hidden: int = 0
    cpu_micro_batch_mib: float = 1.0

    def __post_init__(self):
        # Refused when built, not at the first call: a config error surfaces before any data.
        if self.use_limb_tokens and self.limbs_on_joints:
            raise ValueError("limbs_on_joints=True needs use_limb_tokens=False")
        super().__post_init__()

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> TemporalGraphLimbTransformer:
        """Builds the model from config.model; unknown fields are an error."""
        given = trunk.config_kwargs(cls, config)
        if "log_sigma_range" in given:
            given["log_sigma_range"] = tuple(float(v) for v in given["log_sigma_range"])
        return cls(**given)

    @property
    def num_tokens(self) -> int:
        return skeleton.NUM_GRAPH_NODES if self.use_limb_tokens else skeleton.NUM_JOINTS

    @property
    def temporal_tokens(self) -> int:
        """How many tokens (the leading ones) the temporal blocks attend over."""
        return self.num_tokens if self.limb_temporal else skeleton.NUM_JOINTS

    def _check_inputs(self, keypoints_2d: jax.Array, scores: jax.Array | None) -> jax.Array:
        if keypoints_2d.ndim != 4 or keypoints_2d.shape[2:] != (skeleton.NUM_JOINTS, 2):
            raise ValueError(f"keypoints_2d must be (B, T, 17, 2), got {keypoints_2d.shape}")
        if keypoints_2d.shape[1] > self.max_frames:
            raise ValueError(
                f"keypoints_2d has T={keypoints_2d.shape[1]} frames > max_frames={self.max_frames}"
            )
        if scores is None:
            return jnp.ones(keypoints_2d.shape[:-1], jnp.float32)
        if scores.shape != keypoints_2d.shape[:-1]:
            raise ValueError(
                f"scores shape {scores.shape} does not match keypoints {keypoints_2d.shape[:-1]}"
            )
        return scores.astype(jnp.float32)

    def _embed(self, keypoints_2d: jax.Array, scores: jax.Array) -> jax.Array:
        """(B, T, 17, 2), (B, T, 17) -> tokens (B, T, N, dim) float32."""
        joint_in = jnp.concatenate([keypoints_2d, scores[..., None]], axis=-1)
        tokens = nn.Dense(self.dim, name="joint_embed")(joint_in)
        if self.use_limb_tokens or self.limbs_on_joints:
            limb_in = limb_features(keypoints_2d, scores)
            limbs = nn.Dense(self.dim, name="limb_embed")(limb_in)
            if self.use_limb_tokens:
                tokens = jnp.concatenate([tokens, limbs], axis=2)
            else:
                tokens = tokens.at[:, :, skeleton.LIMB_CHILDREN].add(limbs)
        tokens = tokens + layers.LearnedEmbedding(self.num_tokens, self.dim, name="token_embed")()
        time = layers.LearnedEmbedding(self.max_frames, self.dim, name="time_embed")
        return tokens + time(keypoints_2d.shape[1])[:, None, :]

    def _heads(self, tokens: jax.Array) -> dict[str, jax.Array]:
        """Final tokens (B, T, N, dim) float32 -> the outputs dict."""
        joints = tokens[:, :, : skeleton.NUM_JOINTS]
        joints_3d = nn.Dense(3, name="joint_head")(joints)
        joints_3d = joints_3d - joints_3d[:, :, skeleton.ROOT : skeleton.ROOT + 1]
        if self.use_limb_tokens:
            bones_3d = nn.Dense(3, name="bone_head")(tokens[:, :, skeleton.NUM_JOINTS :])
        elif self.limbs_on_joints:
            bones_3d = nn.Dense(3, name="bone_head")(joints[:, :, skeleton.LIMB_CHILDREN])
        else:
            bones_3d = skeleton.limb_vectors(joints_3d)
        return {"joints_3d": joints_3d, "bones_3d": bones_3d, "log_sigma": self._sigma(joints)}

    def _sigma(self, joints: jax.Array) -> jax.Array:
        """Final joint tokens (B, T, 17, dim) -> clipped log sigma (B, T, 17)."""
        features = jax.lax.stop_gradient(joints) if self.sigma_stop_gradient else joints
        if self.sigma_hidden:
            features = nn.gelu(nn.Dense(self.sigma_hidden, name="sigma_hidden")(features))
        # Bias init log(5 cm): a typical per-joint error, so the NLL starts near its optimum.
        sigma_head = nn.Dense(1, bias_init=nn.initializers.constant(np.log(0.05)), name="sigma")
        return jnp.clip(sigma_head(features)[..., 0], *self.log_sigma_range)

    def _micro_batch(self, keypoints_2d: jax.Array) -> int:
        """Sequences per micro-batch; 0 when the batch is lifted at once."""
        if self.cpu_micro_batch_mib <= 0:
            return 0
        sequence_bytes = 4 * keypoints_2d.shape[1] * self.num_tokens * self.dim
        return max(1, int(self.cpu_micro_batch_mib * 2**20) // sequence_bytes)

    def _loops_over_micro_batches(self, train: bool, keypoints_2d: jax.Array) -> bool:
        return (
            0 < self._micro_batch(keypoints_2d) < keypoints_2d.shape[0]
            and not train
            and not self.is_initializing()
            and self.scan_unroll < self.depth
            and layers.cpu_paths()
        )

    @nn.compact
    def __call__(
        self, keypoints_2d: jax.Array, scores: jax.Array | None = None, train: bool = False
    ) -> tuple[dict[str, jax.Array], dict[str, Any]]:
        """Lifts normalised 2D keypoints to root-relative 3D.

        Args:
          keypoints_2d: (B, T, 17, 2) normalised screen coordinates, T <= max_frames.
          scores: (B, T, 17) confidences, or None for ones.
          train: enables dropout and stochastic depth (rng stream 'dropout').

        Returns:
          outputs: 'joints_3d' (B, T, 17, 3) metres with joint 0 at 0, 'bones_3d' (B, T, 16, 3),
            'log_sigma' (B, T, 17) log of the predicted per-joint error scale in metres; float32.
          aux: 'tokens', the final (B, T, N, dim) tokens in the compute dtype.
        """
        scores = self._check_inputs(keypoints_2d, scores)
        if self._loops_over_micro_batches(train, keypoints_2d):
            whole = self.clone(parent=None, cpu_micro_batch_mib=0.0)
            variables = self.variables
            return trunk.micro_batched(
                lambda x, s: whole.apply(variables, x, s),
                (keypoints_2d, scores),
                self._micro_batch(keypoints_2d),
            )
        final, tokens = trunk.spatio_temporal_trunk(
            self,
            self._embed(keypoints_2d.astype(jnp.float32), scores),
            train=train,
            hop_distances=_graph_hops(self.use_limb_tokens) if self.use_graph_bias else None,
            attention_chunk_mib=self.attention_chunk_mib,
            temporal_tokens=self.temporal_tokens,
        )
        return self._heads(final), {"tokens": tokens}
