"""Profiles a TGT or GPC config: parameters, FLOPs per frame, latency, throughput, memory.

  python -m experiments.profile --config configs/tgt_base.py:tiny --json /tmp/tgt_tiny.json
  python -m experiments.profile --config configs/tgt_base.py --batch 8 --dtype bfloat16
  python -m experiments.profile --config configs/gpc_base.py:tiny --skip_train

For a GPC config the refinement's cost is given in forwards of its TGT: the config saved in
config.tgt_workdir when that directory exists, else configs/tgt_base.py of the same variant.
Prints a table; --json writes the same numbers (gentg_jax.profiling).
"""

import os

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from configs import tgt_base
from experiments import _cli
from experiments._errors import user_errors
from gentg_jax import checkpoint, files, profiling

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/tgt_base.py", "TGT or GPC config file[:variant].", lock_config=True
)
_JSON = flags.DEFINE_string("json", None, "Also write the profile to this JSON file.")
_BATCH = flags.DEFINE_integer("batch", 8, "Windows per batch for throughput and training.")
_DTYPE = flags.DEFINE_enum(
    "dtype", None, ["float32", "bfloat16"], "Compute dtype (default: config.model.dtype)."
)
_SKIP_TRAIN = flags.DEFINE_bool("skip_train", False, "Do not time the training step.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median kept).")


def tgt_config_for(config: ml_collections.ConfigDict, config_arg: str) -> ml_collections.ConfigDict:
    """The TGT config that feeds a GPC config (see the module docstring)."""
    workdir = config.get("tgt_workdir", "")
    if workdir and os.path.isdir(workdir):
        return checkpoint.load_config(workdir)
    if workdir:
        logging.warning("tgt_workdir %s does not exist: using configs/tgt_base.py", workdir)
    _, _, variant = config_arg.partition(":")
    return tgt_base.get_config(variant or None)


@user_errors
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    config_arg = config_flags.get_config_filename(flags.FLAGS["config"])
    tgt_config = tgt_config_for(config, config_arg) if config.task == "gpc" else None
    if _DTYPE.value:
        config.model.dtype = _DTYPE.value
        if tgt_config is not None:
            tgt_config.model.dtype = _DTYPE.value
    logging.info("devices: %s", jax.devices())
    result = profiling.profile(
        config, tgt_config, _BATCH.value, train=not _SKIP_TRAIN.value, repeats=_REPEATS.value
    )
    result = {"config": config_arg, **result}
    print(profiling.format_table(result), flush=True)
    if _JSON.value:
        files.write_json(_JSON.value, result)
        logging.info("wrote %s", _JSON.value)


if __name__ == "__main__":
    _cli.run(main)
