"""Helpers shared by the config files."""

import ml_collections

from configs import tgt_base


def from_tgt_variant(arg: str | None, task: str) -> tuple[str, ml_collections.ConfigDict]:
    """The variant `arg` names (tiny or base; default base) and a new config for `task` (seed 0)
    with the data, train and eval sections of configs/tgt_base.py's variant of that name."""
    variant = arg or "base"
    if variant not in ("tiny", "base"):
        raise ValueError(f"unknown variant {variant!r}; choose tiny or base")
    tgt = tgt_base.get_config(variant)
    config = ml_collections.ConfigDict()
    config.task = task
    config.seed = 0
    config.data = tgt.data
    config.train = tgt.train
    # the TGT's own sigma-head rate: no sigma head is trained from scratch here (0: the shared
    # schedule, which fine-tuning keeps for the TGT's head too)
    config.train.sigma_learning_rate = 0.0
    config.eval = tgt.eval
    return variant, config
