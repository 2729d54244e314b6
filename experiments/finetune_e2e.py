"""Fine-tunes a TGT and its GPC together (resuming from --workdir when it holds checkpoints).

  python -m experiments.finetune_e2e --config configs/e2e_finetune.py:tiny --workdir runs/e2e \
      --config.gpc_workdir=runs/gpc
The TGT is the GPC's (its saved tgt_workdir) unless --config.tgt_workdir names another.
Multi-host: run the same command on every host with --jax_distributed.
"""

from experiments import _cli
from experiments._errors import user_errors

main = user_errors(_cli.training_main("configs/e2e_finetune.py"))

if __name__ == "__main__":
    _cli.run(main)
