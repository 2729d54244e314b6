"""The files of the infer command: reading 2D keypoint inputs, writing result npz files.

Inputs (`read_input`): an npz with `keypoints` (T, 17, 2) pixels (or (T, 17, 3) with a score
channel), `image_size` (w, h) (required unless the config gives `image_size`) and optional
`scores` (T, 17) and `layout`; or a VideoPose3D custom 2D file (`positions_2d` = {video:
{'custom': [(T, 17, 2)]}}, `metadata` = {'layout_name', 'video_metadata': {video: {'w', 'h'}}}),
whose pickled dicts are read by `videopose3d.load_npz_item` (numpy arrays, dicts, lists and
scalars only: a file naming anything else is refused, nothing in it runs).
`infer_file` lifts one input file with a checkpoint and writes the result (`write_result`):
keypoints_2d (H36M order, pixels, missing joints filled in), scores, image_size, coarse_3d,
uncertainty and, when refining, refined_3d and resampled; `gentg_jax.viz.load_result` reads it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

import ml_collections
import numpy as np

from gentg_jax import files
from gentg_jax.data import videopose3d
from gentg_jax.inference.inputs import prepare_keypoints
from gentg_jax.inference.predictor import load_predictor


def _pickled_dict(path: str, key: str) -> dict:
    value = videopose3d.load_npz_item(path, key)
    if value.shape != () or not isinstance(value.item(), Mapping):
        raise ValueError(f"{path}: {key!r} must be a pickled dict (VideoPose3D custom format)")
    return value.item()


def _videopose3d(path: str, names: list[str], video: str) -> dict:
    positions = _pickled_dict(path, "positions_2d")
    metadata = _pickled_dict(path, "metadata") if "metadata" in names else {}
    if not video and len(positions) != 1:
        raise ValueError(f"{path} holds videos {sorted(positions)}; choose one with --config.video")
    video = video or next(iter(positions))
    if video not in positions or "custom" not in positions[video]:
        raise ValueError(
            f"{path} has no video {video!r} with a 'custom' entry: {sorted(positions)}"
        )
    size = metadata.get("video_metadata", {}).get(video)
    custom = positions[video]["custom"]
    if not isinstance(custom, (list, tuple)) or not custom:
        raise ValueError(f"{path}: video {video!r}: 'custom' must be a list of keypoint arrays")
    return {
        "keypoints": np.asarray(custom[0]),
        "image_size": None if size is None else (size["w"], size["h"]),
        "layout": metadata.get("layout_name"),
    }


def read_input(path: str | os.PathLike, video: str = "") -> dict:
    """{'keypoints', 'scores' (or None), 'image_size' (or None), 'layout' (or None)}.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: not an npz file, neither format, or unreadable arrays; UnsafeFileError (a
        ValueError) for pickled data that is not numpy arrays, dicts, lists and scalars.
    """
    path = str(path)
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"no input file at {path}")
    names = videopose3d.npz_keys(path)  # not an npz: a clear error, nothing unpickled
    if "positions_2d" in names:
        found = _videopose3d(path, names, video)
    elif "keypoints" in names:
        found = {
            k: videopose3d.load_npz_item(path, k)
            for k in ("keypoints", "scores", "image_size")
            if k in names
        }
        found["layout"] = (
            str(videopose3d.load_npz_item(path, "layout")) if "layout" in names else None
        )
    else:
        raise ValueError(f"{path} has neither 'keypoints' nor 'positions_2d' (it has {names})")
    keypoints = np.asarray(found["keypoints"], np.float32)
    if keypoints.ndim == 3 and keypoints.shape[-1] == 3 and found.get("scores") is None:
        found["scores"], keypoints = keypoints[..., 2], keypoints[..., :2]
    return {**found, "keypoints": keypoints, "scores": found.get("scores")}


def write_result(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes a result npz atomically (exactly at `path`, whatever its suffix)."""
    with files.atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)  # to a file object: savez would add .npz to any other suffix


def infer_file(
    config: ml_collections.ConfigDict, input_path: str | os.PathLike, output_path: str | os.PathLike
) -> dict[str, np.ndarray]:
    """Reads `input_path`, predicts with `config` (configs/infer_offline.py), writes
    `output_path`; returns the written arrays."""
    if not config.checkpoint:
        raise ValueError("set --config.checkpoint to a workdir or checkpoint directory")
    found = read_input(input_path, config.video)
    size = config.image_size if config.image_size is not None else found.get("image_size")
    if size is None:
        raise ValueError(
            f"{input_path} has no image_size and the config gives none: add image_size=(w, h) "
            "(pixels) to the npz, or pass --config.image_size='(W, H)' (VideoPose3D custom "
            "files carry it in metadata['video_metadata'])"
        )
    layout = config.layout or found["layout"] or "h36m"
    keypoints, scores, size = prepare_keypoints(found["keypoints"], found["scores"], size, layout)
    step = int(config.step) if str(config.step).isdigit() else config.step
    predictor = load_predictor(
        config.checkpoint,
        step,
        tgt_path=config.tgt_path or None,
        flip=config.flip,
        window_stride=config.window_stride or None,
        batch_size=config.batch_size,
        allow_tgt_mismatch=bool(config.get("allow_tgt_mismatch", False)),
    )
    outputs = predictor.predict(
        keypoints[0], scores[0], size[0], refine=config.refine, seed=config.seed
    )
    arrays = {"keypoints_2d": keypoints[0], "scores": scores[0], "image_size": size[0], **outputs}
    write_result(output_path, arrays)
    return arrays
