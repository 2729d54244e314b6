"""Evaluates a trained workdir with the Human3.6M protocol; tables go to <workdir>/eval/.

  python -m experiments.evaluate --workdir runs/tgt
  python -m experiments.evaluate --workdir runs/tgt --checkpoint latest \
      --config configs/tgt_base.py:tiny --config.data.test_flip=False
Without --config the config saved with the checkpoint is used. Writes eval.json, eval.csv and
eval.md (P1/P2/N-MPJPE in mm per action) and prints the Markdown table.
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from gentg_jax.train import loop, parallel

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Optional config file[:variant] overriding the saved one.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.", required=True)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "best", "Checkpoint to evaluate: a step number, 'best' or 'latest'."
)
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
    step = int(_CHECKPOINT.value) if _CHECKPOINT.value.isdigit() else _CHECKPOINT.value
    _, written = loop.evaluate_checkpoint(_WORKDIR.value, step=step, config=_CONFIG.value)
    if written:
        print(written["markdown"], end="")
        logging.info(
            "tables written to %s, %s and %s", written["json"], written["csv"], written["md"]
        )


if __name__ == "__main__":
    app.run(main)
