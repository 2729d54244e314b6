"""gentg-jax: GenTG-Limb monocular 3D human pose estimation in JAX/Flax."""

__version__ = "0.1.0"
