"""Fine-tunes a TGT and its GPC together (resuming from --workdir when it holds checkpoints).

  python -m experiments.finetune_e2e --config configs/e2e_finetune.py:tiny --workdir runs/e2e \
      --config.gpc_workdir=runs/gpc
The TGT is the GPC's (its saved tgt_workdir) unless --config.tgt_workdir names another.
Multi-host: run the same command on every host with --jax_distributed.
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from gentg_jax.train import loop, parallel

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/e2e_finetune.py", "Training config file[:variant].", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, logs).", required=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "jax_distributed", False, "Call jax.distributed.initialize() (multi-host runs)."
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _DISTRIBUTED.value:
        parallel.initialize_distributed()
    logging.info(
        "process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
    )
    result = loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    logging.info("final eval: %s", result.eval_metrics)


if __name__ == "__main__":
    app.run(main)
