"""Flax linen models: the TGT lifter and the layers shared with the GPC denoiser."""

from gentg_jax.models.tgt import TemporalGraphLimbTransformer

__all__ = ["TemporalGraphLimbTransformer"]
