r"""Lifts a 2D keypoint file to 3D with a trained checkpoint and writes the result npz.

  python -m experiments.infer --config configs/infer_offline.py \
      --config.checkpoint=runs/e2e --input seq.npz --output out.npz

Input formats and the output npz: `gentg_jax.inference.io` (an npz with `keypoints` and optional
`scores`, `image_size`, `layout`; or a VideoPose3D custom 2D file). experiments/visualize.py reads
the output.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import _cli
from experiments._errors import user_errors
from gentg_jax import inference

_CONFIG = config_flags.DEFINE_config_file("config", None, "Inference config.", lock_config=True)
_INPUT = flags.DEFINE_string("input", None, "2D keypoint npz (see the docstring).", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Result npz (default: config.output).")


@user_errors
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    output = _OUTPUT.value or config.output
    arrays = inference.infer_file(config, _INPUT.value, output)
    logging.info("wrote %s: %s", output, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    _cli.run(main)
