"""Renders an inference result as an animation and still frames, and evaluation JSON as plots.

  python -m experiments.visualize --npz out.npz --out viz/
  python -m experiments.visualize --npz out.npz --out viz/ --frames 0,10,20 --noanimate
  python -m experiments.visualize --eval_json runs/tgt/eval/a.json,runs/e2e/eval/b.json --out viz/

Writes under --out: `animation.gif` (and `animation.mp4` when ffmpeg is on PATH) unless
--noanimate, `frame_00010.png` for each --frames index, and from --eval_json `per_action_p1.png`,
`per_action_p2.png` and `calibration.png`. The npz is what `experiments.infer` writes (arrays
listed in gentg_jax/viz.py).

--eval_json takes one or more comma-separated files, millimetres throughout, of either shape:

  {"per_action": {"tgt":     {"Walking": {"p1": 45.1, "p2": 35.2}, "Eating": {...}, ...},
                  "refined": {"Walking": {"p1": 43.0, "p2": 34.0}, ...}},
   "calibration": {"sigma_mm": [12.0, 30.5, ...], "error_mm": [10.2, 41.0, ...]}}

  {"tables": {"P1": {"actions": {"Walking": 45.1, ...}, ...}, "P2": {...}, ...}, ...}

The first: `per_action` maps each method to action -> metrics ("p1" required, "p2" plotted when
every entry has one; rows named Average/mean are ignored, the mean over actions is recomputed);
`calibration` holds one (predicted sigma, actual error) pair per joint and frame, binned here
into equal-count bins, or already-binned means (ten pairs or fewer are plotted as they are).
Either section may be left out. The second is what `gentg_jax.evaluation.write_tables` writes
(`<workdir>/eval/*.json`): one method, named after the workdir (the file name elsewhere). The
files' methods are merged, so `--eval_json runs/tgt/eval/a.json,runs/e2e/eval/b.json` compares
two runs.
"""

import json
import pathlib

from absl import app, flags, logging

from gentg_jax import viz

_NPZ = flags.DEFINE_string("npz", None, "Result npz written by experiments.infer.")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_EVAL_JSON = flags.DEFINE_list("eval_json", [], "Evaluation JSON file(s) to plot (see docstring).")
_FRAMES = flags.DEFINE_list("frames", [], "Frame indices to save as PNG stills, e.g. 0,10,20.")
_ANIMATE = flags.DEFINE_bool("animate", True, "Write animation.gif (+ .mp4 with ffmpeg).")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 200, "Animate at most this many frames.")
_STRIDE = flags.DEFINE_integer("stride", 1, "Animate every stride-th frame.")
_FPS = flags.DEFINE_float("fps", 25.0, "Animation frames per second.")
_DPI = flags.DEFINE_integer("dpi", 72, "Resolution of the animation (stills use 100).")


def _read_json(path: str) -> dict:
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"no evaluation JSON at {path}")
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not {"per_action", "calibration", "tables"} & set(data):
        raise ValueError(f"{path} has none of 'per_action', 'calibration', 'tables' (see --help)")
    if "tables" in data:  # an evaluator table file: one method, named after its run
        path = pathlib.Path(path).resolve()
        name = path.parent.parent.name if path.parent.name == "eval" else path.stem
        return {"per_action": {name: viz.per_action_from_tables(data["tables"])}}
    return data


def _read_evaluation(paths: list[str]) -> dict:
    """Merges the files' methods (each name once) and takes the last calibration section."""
    evaluation: dict = {}
    for path in paths:
        data = _read_json(path)
        if not isinstance(data.get("per_action", {}), dict):
            raise ValueError(f"{path}: 'per_action' must map method -> {{action: {{'p1': mm}}}}")
        for method, table in data.get("per_action", {}).items():
            if method in evaluation.setdefault("per_action", {}):
                raise ValueError(f"method '{method}' is in more than one --eval_json file")
            evaluation["per_action"][method] = table
        if "calibration" in data:
            evaluation["calibration"] = data["calibration"]
    return evaluation


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
        written += viz.plot_evaluation(_read_evaluation(_EVAL_JSON.value), out)
    for path in written:
        logging.info("wrote %s", path)


if __name__ == "__main__":
    app.run(main)
