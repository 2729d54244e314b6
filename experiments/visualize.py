"""Renders an inference result as an animation and still frames, and evaluation JSON as plots.

  python -m experiments.visualize --npz out.npz --out viz/
  python -m experiments.visualize --npz out.npz --out viz/ --frames 0,10,20 --noanimate
  python -m experiments.visualize --eval_json runs/tgt/eval/a.json,runs/e2e/eval/b.json --out viz/

Writes under --out: `animation.gif` (and `animation.mp4` when ffmpeg is on PATH) unless
--noanimate, `frame_00010.png` for each --frames index, and from --eval_json `per_action_p1.png`,
`per_action_p2.png` and `calibration.png`. The npz is what `experiments.infer` writes (arrays
listed in gentg_jax/viz/animation.py).

--eval_json takes one or more comma-separated files: the tables `experiments.evaluate` and
training write (`<workdir>/eval/*.json`, one method each, named after the workdir), or hand-made
plot inputs (the shapes are in gentg_jax/evaluation/report.py). The files' methods are merged,
so `--eval_json runs/tgt/eval/a.json,runs/e2e/eval/b.json` compares two runs.
"""

import pathlib

from absl import app, flags, logging

from experiments import _cli
from experiments._errors import user_errors
from gentg_jax import evaluation, viz

_NPZ = flags.DEFINE_string("npz", None, "Result npz written by experiments.infer.")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_EVAL_JSON = flags.DEFINE_list("eval_json", [], "Evaluation JSON file(s) to plot (see docstring).")
_FRAMES = flags.DEFINE_list("frames", [], "Frame indices to save as PNG stills, e.g. 0,10,20.")
_ANIMATE = flags.DEFINE_bool("animate", True, "Write animation.gif (+ .mp4 with ffmpeg).")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 200, "Animate at most this many frames.")
_STRIDE = flags.DEFINE_integer("stride", 1, "Animate every stride-th frame.")
_FPS = flags.DEFINE_float("fps", 25.0, "Animation frames per second.")
_DPI = flags.DEFINE_integer("dpi", 100, "Animation resolution (100: 300-pixel panels).")


@user_errors
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _NPZ.value and not _EVAL_JSON.value:
        raise app.UsageError("give --npz, --eval_json or both")
    try:
        frames = [int(frame) for frame in _FRAMES.value]
    except ValueError as error:
        raise app.UsageError(f"--frames must be comma-separated integers: {error}") from error
    out = pathlib.Path(_OUT.value)
    written = []
    if _NPZ.value:
        result = viz.load_result(_NPZ.value)
        if _ANIMATE.value:
            written += viz.animate(
                result,
                out / "animation.gif",
                fps=_FPS.value,
                max_frames=_MAX_FRAMES.value,
                stride=_STRIDE.value,
                dpi=_DPI.value,
            )
        if frames:
            written += viz.save_frames(result, out, frames)
    if _EVAL_JSON.value:
        written += viz.plot_evaluation(evaluation.read_for_plots(_EVAL_JSON.value), out)
    for path in written:
        logging.info("wrote %s", path)


if __name__ == "__main__":
    _cli.run(main)
