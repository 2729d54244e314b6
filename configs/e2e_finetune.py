"""End-to-end fine-tuning of a trained TGT and GPC together (gentg_jax.train.gpc_tasks.E2ETask).

  python -m experiments.finetune_e2e --config configs/e2e_finetune.py:tiny --workdir runs/e2e \
      --config.gpc_workdir=runs/gpc --config.tgt_workdir=runs/tgt
  python -m experiments.finetune_e2e --config configs/e2e_finetune.py --workdir runs/e2e_base \
      --config.gpc_workdir=runs/gpc_base

`tgt_workdir` defaults to the one the GPC was trained on. Both start from their latest EMA
parameters. The saved TGT and GPC configs are embedded as `config.tgt` and `config.gpc` when the
run starts (their models, the TGT's loss and the GPC's diffusion schedule come from there); the
`refine` section below sets the refinement of predict/evaluation and of the loss surrogate.
Variants `tiny` and `base` (default) take data, train and eval from configs/tgt_base.py's
variant of the same name, with a fine-tuning schedule.
"""

import ml_collections

from configs import common, gpc_base
from gentg_jax import skeleton


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant, config = common.from_tgt_variant(arg, "e2e")
    config.tgt_workdir = ""  # "": the GPC's saved tgt_workdir
    config.gpc_workdir = ""  # required
    # start from a TGT whose parameters differ from the one the GPC was trained on
    config.allow_tgt_mismatch = False
    # Filled with the saved configs of the two workdirs when the run starts.
    config.tgt = ml_collections.ConfigDict()
    config.gpc = ml_collections.ConfigDict()
    config.refine = gpc_base.get_config(variant).refine

    config.loss = ml_collections.ConfigDict()
    config.loss.refined = 1.0  # weight of the one-step refined pose's MPJPE
    config.loss.tgt = 0.5  # weight of the TGT's own loss (config.tgt.loss)
    config.loss.joint_weights = (1.0,) * skeleton.NUM_JOINTS  # of the refined MPJPE
    # The surrogate's noise level: the refinement start level times U(1 - t_jitter, 1 + t_jitter).
    config.loss.t_jitter = 0.25

    # Fine-tuning: a tenth of the from-scratch learning rate, short warmup, few steps.
    config.train.update(
        learning_rate=0.1 * config.train.learning_rate,
        num_steps=config.train.num_steps // 10,
        warmup_steps=config.train.warmup_steps // 10,
    )
    return config
