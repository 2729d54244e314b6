r"""Lifts a 2D keypoint file to 3D with a trained checkpoint and writes the result npz.

  python -m experiments.infer --config configs/infer_offline.py \
      --config.checkpoint=runs/e2e --input seq.npz --output out.npz

Input formats (configs/infer_offline.py): an npz with `keypoints` (T, 17, 2) pixels and optional
`scores`, `image_size`, `layout`; or a VideoPose3D custom 2D file (`positions_2d` =
{video: {'custom': [(T, 17, 2)]}}, `metadata` = {'layout_name', 'video_metadata': {video:
{'w', 'h'}}}), which holds pickled objects: only read files you trust. The output npz
(written atomically) holds keypoints_2d (H36M order, pixels, missing joints filled in), scores,
image_size, coarse_3d, uncertainty and, when refining, refined_3d; experiments/visualize.py
reads it.
"""

import pathlib

import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from gentg_jax import files, inference

_CONFIG = config_flags.DEFINE_config_file("config", None, "Inference config.", lock_config=True)
# Checked in main rather than required=True, so that importing `run` (the quickstart does)
# does not impose the flag on another program.
_INPUT = flags.DEFINE_string("input", None, "2D keypoint npz (see the docstring).")
_OUTPUT = flags.DEFINE_string("output", None, "Result npz (default: config.output).")


def _videopose3d(data: np.lib.npyio.NpzFile, path: str, video: str) -> dict:
    positions = data["positions_2d"].item()
    metadata = data["metadata"].item() if "metadata" in data.files else {}
    if not video and len(positions) != 1:
        raise ValueError(f"{path} holds videos {sorted(positions)}; choose one with --config.video")
    video = video or next(iter(positions))
    if video not in positions or "custom" not in positions[video]:
        raise ValueError(
            f"{path} has no video {video!r} with a 'custom' entry: {sorted(positions)}"
        )
    size = metadata.get("video_metadata", {}).get(video)
    return {
        "keypoints": np.asarray(positions[video]["custom"][0]),
        "image_size": None if size is None else (size["w"], size["h"]),
        "layout": metadata.get("layout_name"),
    }


def read_input(path: str, video: str = "") -> dict:
    """{'keypoints', 'scores' (or None), 'image_size' (or None), 'layout' (or None)}."""
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"no input file at {path}")
    with np.load(path, allow_pickle=False) as data:
        files = data.files
        if "keypoints" in files:
            found = {k: data[k] for k in ("keypoints", "scores", "image_size") if k in files}
            found["layout"] = str(data["layout"]) if "layout" in files else None
    if "positions_2d" in files:
        with np.load(path, allow_pickle=True) as data:  # VideoPose3D pickles its dicts
            found = _videopose3d(data, path, video)
    elif "keypoints" not in files:
        raise ValueError(f"{path} has neither 'keypoints' nor 'positions_2d' (it has {files})")
    keypoints = np.asarray(found["keypoints"], np.float32)
    if keypoints.ndim == 3 and keypoints.shape[-1] == 3 and found.get("scores") is None:
        found["scores"], keypoints = keypoints[..., 2], keypoints[..., :2]
    return {**found, "keypoints": keypoints, "scores": found.get("scores")}


def run(config: ml_collections.ConfigDict, input_path: str, output_path: str) -> dict:
    """Reads `input_path`, predicts, writes `output_path`; returns the written arrays."""
    if not config.checkpoint:
        raise ValueError("set --config.checkpoint to a workdir or checkpoint directory")
    found = read_input(input_path, config.video)
    size = config.image_size if config.image_size is not None else found["image_size"]
    layout = config.layout or found["layout"] or "h36m"
    keypoints, scores, size = inference.prepare_keypoints(
        found["keypoints"], found["scores"], size, layout
    )
    step = int(config.step) if str(config.step).isdigit() else config.step
    predictor = inference.load_predictor(
        config.checkpoint,
        step,
        tgt_path=config.tgt_path or None,
        flip=config.flip,
        window_stride=config.window_stride or None,
        batch_size=config.batch_size,
    )
    outputs = predictor.predict(
        keypoints[0], scores[0], size[0], refine=config.refine, seed=config.seed
    )
    arrays = {"keypoints_2d": keypoints[0], "scores": scores[0], "image_size": size[0], **outputs}
    with files.atomic_path(output_path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)  # to a file object: savez would add .npz to any other suffix
    return arrays


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if not _INPUT.value:
        raise app.UsageError("--input is required: a 2D keypoint npz")
    output = _OUTPUT.value or config.output
    arrays = run(config, _INPUT.value, output)
    logging.info("wrote %s: %s", output, {k: v.shape for k, v in arrays.items()})


if __name__ == "__main__":
    app.run(main)
