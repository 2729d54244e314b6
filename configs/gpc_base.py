"""GPC (generative pose corrector) training: a conditional diffusion denoiser over 3D poses.

  python -m experiments.train_gpc --config configs/gpc_base.py:tiny --workdir runs/gpc
  python -m experiments.train_gpc --config configs/gpc_base.py --workdir runs/gpc_base \
      --config.tgt_workdir=runs/tgt_base --config.train_from_gt_noise=False

Variants: `tiny` (T=27 like tgt_base:tiny, dim 64, depth 2) and `base` (default; T=243, dim 128,
depth 4). Data, train and eval derive from configs/tgt_base.py's sections of the same variant.
With `train_from_gt_noise` the coarse pose and its sigma are simulated from the ground truth
(`gt_noise`, diffusion.simulate_coarse), so GPC can train before a TGT checkpoint exists;
otherwise the frozen TGT at `tgt_workdir` provides them.
"""

import ml_collections

from configs import common
from gentg_jax import skeleton

# Per-joint std (metres) of the simulated lifter error: small at the hips and torso, large at the
# extremities, as lifting errors are. Root 0: poses are root-relative.
_JOINT_STD = (
    0.0,  # hip
    0.015,  # rhip
    0.03,  # rknee
    0.045,  # rankle
    0.015,  # lhip
    0.03,  # lknee
    0.045,  # lankle
    0.02,  # spine
    0.025,  # thorax
    0.03,  # neck/nose
    0.035,  # head
    0.03,  # lshoulder
    0.045,  # lelbow
    0.06,  # lwrist
    0.03,  # rshoulder
    0.045,  # relbow
    0.06,  # rwrist
)


def _sections(config: ml_collections.ConfigDict) -> None:
    """Denoiser, diffusion, refinement, loss and GT-noise sections of the base variant."""
    config.model = ml_collections.ConfigDict()
    config.model.dim = 128  # token width
    config.model.depth = 4  # spatial+temporal layer pairs
    config.model.num_heads = 4  # attention heads
    config.model.mlp_ratio = 2.0  # MLP hidden width / token width
    config.model.dropout = 0.0  # dropout rate (attention output and MLP)
    config.model.drop_path = 0.0  # stochastic depth rate
    config.model.max_frames = 243  # longest window the temporal embedding covers
    config.model.use_graph_bias = True  # hop-distance attention bias over the 17 joints
    config.model.spatial_first = True  # spatial block before the temporal one in a layer
    # timestep conditioning by adaLN-Zero modulation (besides the added embedding)
    config.model.adaln = True
    config.model.predict_residual = True  # predict x0 as coarse + a zero-initialised correction
    config.model.remat = True  # rematerialise each scanned layer (training memory)
    config.model.dtype = "float32"  # compute dtype: "float32" | "bfloat16"; params stay float32

    config.diffusion = ml_collections.ConfigDict()
    config.diffusion.num_train_steps = 1000  # diffusion levels of the training schedule
    config.diffusion.schedule = "cosine"  # noise schedule (Nichol & Dhariwal 2021)
    # Training draws t uniformly from [0, max_train_timestep]: refinement never starts above
    # refine.t_max, so higher levels would only spend capacity. A low ceiling makes the denoiser
    # a corrector of the coarse pose: on real motion (README, Real motion) t <= 400 learned
    # nothing (x0 = coarse) while t <= 50 lowers the error.
    config.diffusion.max_train_timestep = 50
    # Fraction of training windows whose x_t noises the coarse pose instead of the ground truth.
    # Refinement starts from the noised coarse pose, so 1.0 trains on exactly what it will see;
    # 0.0 is the textbook objective (noise the clean target).
    config.diffusion.coarse_start_fraction = 1.0

    config.refine = ml_collections.ConfigDict()
    # "window_fraction" (the most uncertain joint-frames of each window: adapts to the lifter's
    # sigma scale) | "top_fraction" (the same per frame) | "threshold" (sigma above a level)
    config.refine.selection = "window_fraction"
    config.refine.threshold = 0.05  # metres: resample joints with sigma above it ("threshold")
    # resampled share of the non-root joints: per window (window_fraction) or per frame
    config.refine.top_fraction = 0.25
    config.refine.num_steps = 1  # K DDIM steps (one step from a low level: a correction)
    config.refine.eta = 0.0  # DDIM stochasticity (0: deterministic)
    config.refine.num_hypotheses = 1  # H
    # Start level: first t with sqrt((1 - ab) / ab) >= start_factor * max selected sigma.
    config.refine.start_factor = 1.5
    config.refine.t_min = 10  # lowest start level
    config.refine.t_max = 50  # highest start level (never above diffusion.max_train_timestep)
    config.refine.aggregation = "mean"  # deployable refined_3d: "mean" | "reproj"

    config.loss = ml_collections.ConfigDict()
    config.loss.joint_weights = (1.0,) * skeleton.NUM_JOINTS  # per-joint x0 MPJPE weights
    config.loss.mpjpe = 1.0  # weight of the weighted MPJPE of the denoised pose
    config.loss.velocity = 0.5  # weight of its velocity error along frames

    config.gt_noise = ml_collections.ConfigDict()
    config.gt_noise.joint_std = _JOINT_STD  # per-joint std (m) of the simulated lifter error
    config.gt_noise.outlier_rate = 0.1  # fraction of joints given a gross simulated error
    config.gt_noise.outlier_std = 0.15  # std (m) of a gross simulated error
    config.gt_noise.sigma_floor = 0.01  # smallest simulated sigma (m)
    config.gt_noise.sigma_jitter = 0.2  # log-space std of the synthetic sigma's error


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant, config = common.from_tgt_variant(arg, "gpc")
    config.tgt_workdir = ""  # the frozen TGT checkpoint; "" with train_from_gt_noise
    # resume (evaluate) with a TGT whose parameters differ from the one recorded at the start
    config.allow_tgt_mismatch = False
    # train on coarse poses simulated from the ground truth (no TGT needed)
    config.train_from_gt_noise = True
    _sections(config)
    if variant == "tiny":
        config.model.update(dim=64, depth=2, max_frames=config.data.num_frames, remat=False)
    return config
