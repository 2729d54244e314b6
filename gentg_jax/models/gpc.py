"""PoseDenoiser: the generative pose corrector's (GPC) conditional diffusion network.

Each frame becomes 17 joint tokens built from [noisy 3D x_t (3), input 2D (2), coarse 3D (3),
log sigma (1)]. The diffusion timestep embedding is added to every token and, with `adaln`, also
modulates every block's norms (adaLN-Zero, layers.TransformerBlock). `depth` spatio-temporal layers
(attention over the joints of a frame with an optional hop-distance bias, then over the frames of
each joint) follow, and a head reads the clean root-relative pose x0 (joint 0 at 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gentg_jax import skeleton
from gentg_jax.models import layers, trunk


class PoseDenoiser(nn.Module):
    """x0-predicting denoiser; fields mirror config.model (from_config).

    Attributes:
      dim, depth, num_heads, mlp_ratio: transformer size.
      dropout: dropout on embeddings, attention output and MLPs.
      drop_path: stochastic-depth rate of the last layer (linear from 0 at the first).
      max_frames: the longest clip; any T <= max_frames is accepted.
      use_graph_bias: learned per-head spatial bias by hop distance in the 17-joint skeleton.
      spatial_first: order of spatial and temporal attention in a layer.
      adaln: timestep-modulated norms in every block, on top of the additive embedding.
      predict_residual: x0_hat = coarse_3d + head(tokens), so an untrained net returns the coarse.
      remat / scan_unroll: as in the TGT (scan_unroll = depth for XLA cost analysis).
      dtype: compute dtype name, "float32" or "bfloat16" (params and outputs stay float32).
      attention_impl: "xla", "einsum", "cudnn" or "auto" (layers.Attention).
    """

    dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    drop_path: float = 0.0
    max_frames: int = 243
    use_graph_bias: bool = True
    spatial_first: bool = True
    adaln: bool = True
    predict_residual: bool = True
    remat: bool = True
    scan_unroll: int = 1
    dtype: str = "float32"
    attention_impl: str = "xla"

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> PoseDenoiser:
        """Builds the denoiser from config.model; unknown fields are an error."""
        return cls(**trunk.config_kwargs(cls, config))

    def _check_inputs(self, x_t, t, keypoints_2d, coarse_3d, log_sigma) -> jax.Array:
        """Validates shapes; returns t as (B,) int32."""
        if x_t.ndim != 4 or x_t.shape[2:] != (skeleton.NUM_JOINTS, 3):
            raise ValueError(f"x_t must be (B, T, 17, 3), got {x_t.shape}")
        lead = x_t.shape[:3]
        expected = {"keypoints_2d": lead + (2,), "coarse_3d": lead + (3,), "log_sigma": lead}
        for name, array in zip(expected, (keypoints_2d, coarse_3d, log_sigma), strict=True):
            if array.shape != expected[name]:
                raise ValueError(f"{name} must be {expected[name]}, got {array.shape}")
        if x_t.shape[1] > self.max_frames:
            raise ValueError(f"x_t has T={x_t.shape[1]} frames > max_frames={self.max_frames}")
        t = jnp.asarray(t, jnp.int32)
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != x_t.shape[0]):
            raise ValueError(f"t must be a scalar or ({x_t.shape[0]},), got {t.shape}")
        return jnp.broadcast_to(t, x_t.shape[:1])

    def _embed(self, x_t, keypoints_2d, coarse_3d, log_sigma, temb) -> jax.Array:
        """Per-joint inputs -> tokens (B, T, 17, dim) float32, timestep embedding added."""
        joint_in = jnp.concatenate([x_t, keypoints_2d, coarse_3d, log_sigma[..., None]], axis=-1)
        tokens = nn.Dense(self.dim, name="joint_embed")(joint_in.astype(jnp.float32))
        joints = layers.LearnedEmbedding(skeleton.NUM_JOINTS, self.dim, name="token_embed")
        frames = layers.LearnedEmbedding(self.max_frames, self.dim, name="time_embed")
        return tokens + joints() + frames(x_t.shape[1])[:, None, :] + temb[:, None, None, :]

    @nn.compact
    def __call__(
        self,
        x_t: jax.Array,
        t: jax.Array,
        keypoints_2d: jax.Array,
        coarse_3d: jax.Array,
        log_sigma: jax.Array,
        train: bool = False,
    ) -> tuple[jax.Array, dict[str, Any]]:
        """Predicts the clean pose.

        Args:
          x_t: (B, T, 17, 3) noisy pose at level t (diffusion.q_sample of a root-relative pose).
          t: (B,) or scalar int timesteps in [0, num_train_steps).
          keypoints_2d: (B, T, 17, 2) normalised input 2D.
          coarse_3d: (B, T, 17, 3) the lifter's root-relative pose, metres.
          log_sigma: (B, T, 17) the lifter's per-joint log uncertainty.
          train: enables dropout and stochastic depth (rng stream 'dropout').

        Returns:
          x0_hat (B, T, 17, 3) float32 with joint 0 at 0, and aux {'tokens': final tokens}.
        """
        t = self._check_inputs(x_t, t, keypoints_2d, coarse_3d, log_sigma)
        temb = layers.TimestepEmbedding(self.dim, name="timestep_embed")(t)  # (B, dim)
        hops = skeleton.graph_hop_distances()[: skeleton.NUM_JOINTS, : skeleton.NUM_JOINTS]
        final, tokens = trunk.spatio_temporal_trunk(
            self,
            self._embed(x_t, keypoints_2d, coarse_3d, log_sigma, temb),
            temb[:, None, None, :] if self.adaln else None,
            train=train,
            hop_distances=layers.as_nested_tuple(hops) if self.use_graph_bias else None,
        )
        # Zero-initialised like DiT's final layer: a fresh residual denoiser returns the coarse.
        x0_hat = nn.Dense(3, kernel_init=nn.initializers.zeros, name="head")(final)
        if self.predict_residual:
            x0_hat = x0_hat + coarse_3d.astype(jnp.float32)
        x0_hat = x0_hat - x0_hat[:, :, skeleton.ROOT : skeleton.ROOT + 1]
        return x0_hat, {"tokens": tokens}


def make_denoise_fn(
    model: PoseDenoiser,
    params: Any,
    keypoints_2d: jax.Array,
    coarse_3d: jax.Array,
    log_sigma: jax.Array,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The (x_t, t) -> x0_hat closure that diffusion.refine / ddim_sample call (eval mode).

    The conditioning (B, T, 17, ...) is bound here; params stay an argument of the enclosing
    jitted function when this is built inside it, so weights are not baked into the program.
    """

    def denoise_fn(x_t: jax.Array, t: jax.Array) -> jax.Array:
        x0_hat, _ = model.apply({"params": params}, x_t, t, keypoints_2d, coarse_3d, log_sigma)
        return x0_hat

    return denoise_fn
