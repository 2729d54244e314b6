"""Trains the GPC pose corrector (resuming from --workdir when it holds checkpoints).

  python -m experiments.train_gpc --config configs/gpc_base.py:tiny --workdir runs/gpc \
      --config.tgt_workdir=runs/tgt --config.train_from_gt_noise=False
  python -m experiments.train_gpc --config configs/gpc_base.py:tiny --workdir runs/gpc_gt
The first conditions the denoiser on the frozen TGT at tgt_workdir; the second trains on coarse
poses simulated from the ground truth (config.gt_noise), before any TGT exists (its evaluation
then refines simulated coarse poses too, unless tgt_workdir is set).
Multi-host: run the same command on every host with --jax_distributed.
"""

from experiments import _cli
from experiments._errors import user_errors

main = user_errors(_cli.training_main("configs/gpc_base.py"))

if __name__ == "__main__":
    _cli.run(main)
