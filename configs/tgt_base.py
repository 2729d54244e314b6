"""TGT (temporal graph-limb transformer) training on Human3.6M-style data.

  python -m experiments.train_tgt --config configs/tgt_base.py:tiny --workdir runs/tgt
  python -m experiments.train_tgt --config configs/tgt_base.py --workdir runs/tgt_base

Variants: `tiny` (T=27, dim 64, depth 2; tests and CPU runs), `base` (default; T=243, dim 256,
depth 8), `large`.
"""

import ml_collections

from gentg_jax import skeleton


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "base"
    config = ml_collections.ConfigDict()
    config.task = "tgt"  # which Task the loop trains ("tgt" | "gpc" | "e2e")
    config.seed = 0  # parameter init, dropout and data-order seed

    config.data = ml_collections.ConfigDict()
    config.data.name = "synthetic_h36m"  # "synthetic_h36m[/gt]" or "h36m_lifting/<2D source>"
    config.data.data_dir = ""  # empty: $TFDS_DATA_DIR or ~/tensorflow_datasets
    config.data.num_frames = 243  # T, frames per window (training and evaluation)
    config.data.flip_augment = True  # random left/right flips of training windows
    config.data.test_flip = True  # test-time flip augmentation in evaluation
    config.data.worker_count = 0  # background threads preparing training batches (0: synchronous)

    config.model = ml_collections.ConfigDict()
    config.model.dim = 256  # token width
    config.model.depth = 8  # spatial+temporal layer pairs
    config.model.num_heads = 8  # attention heads
    # 1.5 keeps base at <= 0.6 GFLOP/frame (2.0 gives 0.64; XLA cost analysis, unrolled layers).
    config.model.mlp_ratio = 1.5
    config.model.dropout = 0.0  # dropout rate (attention output and MLP)
    config.model.drop_path = 0.1  # stochastic depth rate
    config.model.max_frames = 243  # longest window the temporal embedding covers
    # 16 limb tokens beside the 17 joint tokens. Off by default: at equal training CPU time they
    # lose to 17 tokens on real motion (a step costs ~1.9x; README Accuracy); True is the
    # joint+limb TGT (tiny and base measured both ways there)
    config.model.use_limb_tokens = False
    # with use_limb_tokens=False: limb features added to the token of the joint each limb ends at
    config.model.limbs_on_joints = False
    # ablation: hop-distance attention bias in the spatial blocks
    config.model.use_graph_bias = True
    config.model.spatial_first = True  # ablation: spatial block before the temporal one in a layer
    # With limb tokens: False, only the joint tokens attend over time (limb tokens see time
    # through the joints; 0.73x the FLOPs of True, and better P1 at equal CPU time on real
    # motion: README Accuracy); True, limb tokens attend over time too
    config.model.limb_temporal = False
    config.model.remat = True  # rematerialise each scanned layer (training memory)
    config.model.scan_unroll = 1  # layers per scan iteration; depth = fully unrolled (FLOP counts)
    config.model.dtype = "float32"  # compute dtype: "float32" | "bfloat16"; params stay float32
    # "auto" (einsum on CPU; cuDNN or XLA attention on GPU/TPU) | "einsum" | "xla" | "cudnn"
    config.model.attention_impl = "auto"
    config.model.attention_chunk_mib = 6.0  # CPU only: cache-sized attention chunks (~2x); 0: off
    config.model.log_sigma_range = (-7.0, 1.0)  # clip of the predicted log sigma, metres
    # The sigma head reads the joint tokens through a stop-gradient, so its loss trains the head
    # alone: the uncertainty loss's gradient into the trunk cost 3-5 mm P1 on real motion
    # (README Accuracy > Uncertainty); False: the head shares the trunk
    config.model.sigma_stop_gradient = True
    # width of a GELU hidden layer in the sigma head; 0: linear (on detached features a linear
    # head barely ranks the errors: README Accuracy > Uncertainty)
    config.model.sigma_hidden = 64
    # CPU only, outside training: lift batches in a loop over micro-batches of ~this many MiB of
    # token activations (~1.3x faster at base batch 8, ~2x at tiny batch 64); 0: whole batch.
    config.model.cpu_micro_batch_mib = 1.0

    config.loss = ml_collections.ConfigDict()
    # per-joint MPJPE weights, H36M-17 order
    config.loss.joint_weights = (1.0,) * skeleton.NUM_JOINTS
    config.loss.mpjpe = 1.0  # weight of the weighted MPJPE
    config.loss.uncertainty = 0.1  # weight of the beta-NLL term training log sigma
    # beta of the beta-NLL (0: plain Gaussian NLL, which ranks best; with the sigma head on the
    # trunk, model.sigma_stop_gradient=False, beta 0.5 costs less P1)
    config.loss.uncertainty_beta = 0.0
    # weight of joint-head vs bone-head consistency (zero without a bone head: no limb tokens and
    # no limbs_on_joints)
    config.loss.bone = 0.1
    config.loss.velocity = 0.5  # weight of the velocity error along frames

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 100_000  # total optimiser steps (a resumed run continues up to it)
    config.train.batch_size = 64  # global batch (split over hosts and devices)
    config.train.learning_rate = 4e-4  # peak AdamW learning rate
    config.train.warmup_steps = 1000  # linear warmup from 0
    config.train.weight_decay = 0.01  # AdamW decoupled weight decay (matrices only)
    config.train.grad_clip = 1.0  # global-norm gradient clipping
    config.train.ema_decay = 0.999  # EMA of the parameters (evaluated and exported)
    config.train.log_every = 100  # steps between metric logs (stdout, metrics.jsonl, TensorBoard)
    config.train.eval_every = 5000  # steps between evaluations (0: never)
    # steps between checkpoints (0: only at evaluations and the end)
    config.train.checkpoint_every = 5000
    config.train.keep_checkpoints = 3  # latest checkpoints kept (plus the best by P1)
    # Windows per gradient pass on each device; the step averages the micro-batches' gradients
    # (the whole-batch gradient, at one micro-batch's activation memory). 0: all at once.
    config.train.micro_batch_size = 0
    config.train.parallel = "auto"  # "auto" | "single" | "pmap" | "sharded"
    config.train.final_lr_fraction = 0.01  # cosine decay ends at this fraction of learning_rate
    config.train.adam_b1 = 0.9  # AdamW beta1
    config.train.adam_b2 = 0.999  # AdamW beta2
    # > 0: the sigma head's learning rate, constant after the warmup (a head behind
    # model.sigma_stop_gradient keeps fitting the trunk to the end); 0: the shared schedule.
    # Every variant: its peak learning_rate.
    config.train.sigma_learning_rate = config.train.learning_rate

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 32  # global evaluation batch
    config.eval.split = "test"  # TFDS split evaluated
    config.eval.max_windows = 0  # 0: every test window

    if variant == "tiny":
        config.data.num_frames = 27
        config.model.update(dim=64, depth=2, num_heads=4, max_frames=27, drop_path=0.0, remat=False)
        # Small batches and a high learning rate: the fastest P1 per CPU-minute (quickstart).
        # Micro-batches of 2 windows keep XLA:CPU in cache: ~2x the training steps/s there.
        config.train.update(
            num_steps=2000,
            batch_size=16,
            micro_batch_size=2,
            learning_rate=2e-3,
            warmup_steps=50,
            log_every=50,
            eval_every=500,
            checkpoint_every=500,
        )
        config.train.sigma_learning_rate = config.train.learning_rate
        config.eval.batch_size = 64
    elif variant == "large":
        config.model.update(dim=384, depth=12, num_heads=12)
    elif variant != "base":
        raise ValueError(f"unknown variant {variant!r}; choose tiny, base or large")
    return config
