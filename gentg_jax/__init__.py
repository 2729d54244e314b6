"""gentg-jax: GenTG-Limb monocular 3D human pose estimation in JAX/Flax.

  from gentg_jax import load_predictor
  predictor = load_predictor("runs/tgt")
  out = predictor.predict(keypoints_2d, image_size=(1000, 1002))

`load_predictor` and `Predictor` are imported on first use, so `import gentg_jax` stays light
(no JAX until a predictor is needed).
"""

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "load_predictor"]

_LAZY = ("Predictor", "load_predictor")


def __getattr__(name: str):
    if name in _LAZY:
        from gentg_jax import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'gentg_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
