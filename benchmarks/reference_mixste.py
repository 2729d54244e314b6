"""A MixSTE-shaped reference model, for measurement only: the yardstick the TGT's speed is
divided by, timed in the same process (benchmarks/tgt_throughput.py).

Written here from the shape of MixSTE (Zhang et al., CVPR 2022) as published, not from its code:
each frame is 17 joint tokens (a linear embedding of the joint's 2D position plus a learned joint
embedding and a learned frame embedding), `depth` = 8 layers of a spatial transformer block
(attention over the 17 joints of a frame) followed by a temporal one (attention over the frames
of each joint), dim 512, 8 heads, MLP ratio 2, then LayerNorm and a linear 3D head: about
1.2 GFLOP per frame at T = 243, about four times the TGT base's 0.290 (17 joint tokens).

It is plain on purpose: standard pre-norm blocks, softmax attention written as two heads-major
einsums (the layout XLA:CPU runs fastest, so the reference is not handicapped by a slow layout),
no graph bias, no attention chunking, no CPU micro-batching, no dropout or stochastic depth
(which would only add work). Like the TGT, its layers are one `nn.scan` with each layer
rematerialised in the backward pass (`remat`, on by default), so that a training step at
batch 8 fits in memory; `remat=False` is the faster, memory-hungry form.

`ReferenceTask` gives it the pieces `gentg_jax.train.steps.train_step` needs (its loss is the
MPJPE of the root-relative joints), with the TGT config's optimiser, so both training steps run
the same step function, AdamW, clipping and EMA.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gentg_jax import skeleton
from gentg_jax.train import state as state_lib
from gentg_jax.types import Batch, PyTree

_EMBED_INIT = nn.initializers.normal(stddev=0.02)
# "mixste": MixSTE's size; "tiny": a small stand-in for tests of the benchmark code.
SIZES = {
    "mixste": {"dim": 512, "depth": 8, "num_heads": 8},
    "tiny": {"dim": 64, "depth": 2, "num_heads": 4},
}


class Block(nn.Module):
    """x + Attn(LN(x)); x + MLP(LN(x)) on (S, L, D): plain softmax attention over axis 1."""

    num_heads: int
    mlp_ratio: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        seqs, length, dim = x.shape
        head_dim = dim // self.num_heads
        h = nn.LayerNorm(name="norm1")(x)
        qkv = nn.Dense(3 * dim, name="qkv")(h).reshape(seqs, length, 3, self.num_heads, head_dim)
        q, k, v = (jnp.transpose(qkv[:, :, i], (0, 2, 1, 3)) for i in range(3))  # (S, H, L, Dh)
        logits = jnp.einsum("shqd,shkd->shqk", q, k) / math.sqrt(head_dim)
        heads = jnp.einsum("shqk,shkd->shqd", jax.nn.softmax(logits, axis=-1), v)
        heads = jnp.transpose(heads, (0, 2, 1, 3)).reshape(seqs, length, dim)
        x = x + nn.Dense(dim, name="proj")(heads)
        h = nn.LayerNorm(name="norm2")(x)
        h = nn.Dense(int(dim * self.mlp_ratio), name="fc1")(h)
        return x + nn.Dense(dim, name="fc2")(nn.gelu(h))


class Layer(nn.Module):
    """A spatial block over the joints of each frame, then a temporal block over the frames of
    each joint, on (B, T, J, D); (carry, None) for nn.scan."""

    num_heads: int
    mlp_ratio: float

    @nn.compact
    def __call__(self, x: jax.Array, _: None = None) -> tuple[jax.Array, None]:
        batch, frames, joints, dim = x.shape
        block = lambda name: Block(self.num_heads, self.mlp_ratio, name=name)
        x = block("spatial")(x.reshape(batch * frames, joints, dim))
        x = jnp.swapaxes(x.reshape(batch, frames, joints, dim), 1, 2)
        x = block("temporal")(x.reshape(batch * joints, frames, dim))
        return jnp.swapaxes(x.reshape(batch, joints, frames, dim), 1, 2), None


class MixSTEShaped(nn.Module):
    """(B, T, 17, 2) normalised 2D keypoints -> ({'joints_3d': (B, T, 17, 3)}, {}).

    `scores` is accepted for a TGT-like call and ignored (MixSTE reads positions only)."""

    dim: int = 512
    depth: int = 8
    num_heads: int = 8
    mlp_ratio: float = 2.0
    max_frames: int = 243
    remat: bool = True
    scan_unroll: int = 1  # depth: the layer loop unrolled (XLA's cost analysis counts a body once)

    @nn.compact
    def __call__(
        self, keypoints_2d: jax.Array, scores: jax.Array | None = None, train: bool = False
    ) -> tuple[dict[str, jax.Array], dict]:
        del scores, train  # no dropout: train and eval are the same computation
        frames = keypoints_2d.shape[1]
        x = nn.Dense(self.dim, name="joint_embed")(keypoints_2d.astype(jnp.float32))
        joint_pos = self.param("joint_pos", _EMBED_INIT, (skeleton.NUM_JOINTS, self.dim))
        frame_pos = self.param("frame_pos", _EMBED_INIT, (self.max_frames, self.dim))
        x = x + joint_pos + frame_pos[:frames, None]
        layer = nn.remat(Layer, prevent_cse=False) if self.remat else Layer
        stack = nn.scan(
            layer,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            length=self.depth,
            unroll=self.scan_unroll,
        )
        x, _ = stack(self.num_heads, self.mlp_ratio, name="layers")(x, None)
        joints = nn.Dense(3, name="head")(nn.LayerNorm(name="final_norm")(x))
        joints = joints - joints[:, :, skeleton.ROOT : skeleton.ROOT + 1]
        return {"joints_3d": joints}, {}


class ReferenceTask:
    """What `train.steps.train_step` and the benchmark need from a task, for the reference:
    `model`, `init_params`, `loss_fn` (MPJPE of the root-relative joints, metres) and
    `optimizer` (the TGT config's: AdamW, schedule, clipping). `size`: MixSTEShaped fields
    (dim, depth, num_heads: SIZES)."""

    def __init__(self, config: ml_collections.ConfigDict, remat: bool = True, **size):
        self.config = config
        self.model = MixSTEShaped(max_frames=config.model.max_frames, remat=remat, **size)

    def init_params(self, rng: jax.Array, batch: Batch) -> PyTree:
        keypoints = jnp.asarray(batch["keypoints_2d"][:1])
        return self.model.init(rng, keypoints)["params"]

    def loss_fn(self, params, batch, rng, train):
        del rng
        outputs, _ = self.model.apply({"params": params}, batch["keypoints_2d"], train=train)
        target = batch["pose_3d"] - batch["pose_3d"][:, :, skeleton.ROOT : skeleton.ROOT + 1]
        mpjpe = jnp.mean(jnp.linalg.norm(outputs["joints_3d"] - target, axis=-1))
        return mpjpe, {"mpjpe": mpjpe}

    def optimizer(self):
        return state_lib.make_optimizer(self.config.train)


def forward(model: nn.Module):
    """(params, {'keypoints_2d', 'scores'}) -> joints_3d: the timed inference program."""

    def fn(params, inputs):
        outputs, _ = model.apply({"params": params}, inputs["keypoints_2d"], inputs["scores"])
        return outputs["joints_3d"]

    return fn
