"""Skeleton stills and animations (PNG, GIF, MP4) of an inference result.

A *result* is what `experiments/infer.py` writes (an npz), or any mapping with the same arrays:

  keypoints_2d     (T, 17, 2)  input 2D keypoints, pixels, H36M joint order, y down   required
  image_size       (2,)        (w, h) in pixels                                       required
  coarse_3d        (T, 17, 3)  metres, camera frame (x right, y down, z forward)      required
  uncertainty      (T, 17)     predicted sigma per joint, metres                      required
  scores           (T, 17)     2D confidences in [0, 1]                               optional
  refined_3d       (T, 17, 3)  metres, camera frame                                   optional
  resampled        (T, 17)     fraction of windows that resampled each joint, [0, 1]  optional
  ground_truth_3d  (T, 17, 3)  metres, camera frame                                   optional

The figure itself (panels, colours, axes, blitting) is `scene`'s. Every file is written
atomically.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging
from PIL import Image

from gentg_jax import files, logs, skeleton
from gentg_jax.viz.scene import Scene

_J = skeleton.NUM_JOINTS
# Shape after the frame axis of every per-frame array; keypoints_2d (first) fixes T.
_FRAME_ARRAYS = {
    "keypoints_2d": (_J, 2),
    "coarse_3d": (_J, 3),
    "uncertainty": (_J,),
    "scores": (_J,),
    "refined_3d": (_J, 3),
    "resampled": (_J,),
    "ground_truth_3d": (_J, 3),
}
_REQUIRED_KEYS = ("keypoints_2d", "image_size", "coarse_3d", "uncertainty")


def validate_result(result: Mapping[str, Any], source: str = "result") -> dict[str, np.ndarray]:
    """Checks a result mapping (see the module docstring) and returns its arrays as float32.

    Raises:
      ValueError: a required key is missing, or an array has the wrong shape, frame count or
        non-finite values; the message names `source`, the key and the shape.
    """
    missing = [key for key in _REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(f"{source} is missing required key(s) {missing}; it has {sorted(result)}")
    arrays: dict[str, np.ndarray] = {}
    for key, trailing in _FRAME_ARRAYS.items():
        if key not in result:
            continue
        array = np.asarray(result[key], np.float32)
        if array.ndim != len(trailing) + 1 or array.shape[1:] != trailing or not len(array):
            expected = "(T, " + ", ".join(map(str, trailing)) + ")"
            raise ValueError(f"{source}['{key}'] has shape {array.shape}; expected {expected}")
        if arrays and len(array) != len(arrays["keypoints_2d"]):
            raise ValueError(
                f"{source}['{key}'] has {len(array)} frames but keypoints_2d has "
                f"{len(arrays['keypoints_2d'])}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{source}['{key}'] contains non-finite values")
        arrays[key] = array
    size = np.asarray(result["image_size"], np.float32)
    if size.shape != (2,) or not np.all(np.isfinite(size) & (size > 0)):
        raise ValueError(f"{source}['image_size'] must be (w, h) > 0 of shape (2,), got {size!r}")
    if np.any(arrays["uncertainty"] < 0):
        raise ValueError(f"{source}['uncertainty'] has negative values; expected sigmas >= 0")
    if "resampled" in arrays and np.any((arrays["resampled"] < 0) | (arrays["resampled"] > 1)):
        raise ValueError(f"{source}['resampled'] must be fractions in [0, 1]")
    arrays["image_size"] = size
    return arrays


def load_result(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads and validates a result npz written by `experiments/infer.py`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable npz file: {error}") from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array; expected an npz with named arrays")
    with data:
        return validate_result(data, source=str(path))


def _check_frame(t: int, num_frames: int) -> int:
    if not 0 <= t < num_frames:
        raise ValueError(f"frame {t} is out of range for a result with {num_frames} frames")
    return int(t)


def render_frame(result: Mapping[str, Any], frame: int, *, dpi: int = 100) -> np.ndarray:
    """One frame as an RGB image (H, W, 3) uint8, e.g. for `plt.imshow` in a notebook."""
    scene = Scene(validate_result(result), dpi)
    return scene.render(_check_frame(frame, scene.num_frames))


def save_frames(
    result: Mapping[str, Any], out_dir: str | os.PathLike, frames: Sequence[int], *, dpi: int = 100
) -> list[pathlib.Path]:
    """Writes one PNG per frame index, `out_dir/frame_00012.png`; returns their paths."""
    data = validate_result(result)
    if not frames:
        raise ValueError("save_frames needs at least one frame index")
    scene = Scene(data, dpi)
    paths = []
    for t in [_check_frame(t, scene.num_frames) for t in frames]:
        paths.append(pathlib.Path(out_dir) / f"frame_{t:05d}.png")
        with files.atomic_path(paths[-1]) as tmp:
            Image.fromarray(scene.render(t)).save(tmp, format="PNG")
    return paths


def _encode_mp4(ffmpeg: str, images: list[Image.Image], out: pathlib.Path, fps: float) -> None:
    """Pipes the frames through ffmpeg into `out`.

    Raises:
      OSError: ffmpeg could not be started.
      subprocess.CalledProcessError: ffmpeg failed; `stderr` holds the end of its log.
    """
    command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s"]
    command += [f"{images[0].width}x{images[0].height}", "-r", f"{fps}", "-i", "-"]
    # yuv420p (what players expect) needs even sides, hence the pad.
    command += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", str(out)]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe, so ffmpeg never blocks on it
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=log)
        with contextlib.suppress(BrokenPipeError):  # ffmpeg exited early: reported below
            for image in images:
                process.stdin.write(image.convert("RGB").tobytes())
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        if process.wait() != 0:
            log.seek(0)
            message = log.read().decode(errors="replace").strip()[-1000:]
            raise subprocess.CalledProcessError(process.returncode, command, stderr=message)


def _write_mp4(ffmpeg: str, images: list[Image.Image], path: pathlib.Path, fps: float) -> bool:
    """Writes the MP4 atomically; a failure is logged (the GIF is what matters) and leaves no
    file."""
    try:
        with files.atomic_path(path) as tmp:
            _encode_mp4(ffmpeg, images, tmp, fps)
    except subprocess.CalledProcessError as error:
        logging.warning("ffmpeg exited with %d, no MP4 written: %s", error.returncode, error.stderr)
        return False
    except OSError as error:  # ffmpeg missing or not executable, or the directory unwritable
        logging.warning("could not run %s, no MP4 written: %s", ffmpeg, error)
        return False
    return True


def animate(
    result: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    fps: float = 25.0,
    max_frames: int | None = None,
    stride: int = 1,
    dpi: int = 100,
    mp4: bool = True,
) -> list[pathlib.Path]:
    """Writes an animated GIF, and `path` with suffix .mp4 too when `mp4` and ffmpeg is on PATH.

    Args:
      result: a result mapping (see the module docstring), e.g. from `load_result`.
      path: the GIF to write; must end in .gif.
      fps: playback frames per second.
      max_frames: render at most this many frames (the first ones after striding).
      stride: render every `stride`-th frame (50 Hz Human3.6M at stride 2 plays at 25 fps).
      dpi: figure resolution; 100 gives 300-pixel panels (1290 x 330 pixels with all four).
      mp4: also write an MP4 when ffmpeg is available.

    Returns:
      The paths written: the GIF, then the MP4 when one was made.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"animate writes a GIF; path must end in .gif, got {path}")
    if fps <= 0 or stride < 1 or (max_frames is not None and max_frames < 1):
        raise ValueError(
            f"need fps > 0, stride >= 1, max_frames >= 1; got {fps, stride, max_frames}"
        )
    scene = Scene(validate_result(result), dpi)
    frames = range(0, scene.num_frames, stride)[:max_frames]
    images = [
        Image.fromarray(scene.render(t)).quantize(255, method=Image.Quantize.FASTOCTREE)
        for t in logs.progress(frames, desc="animation", unit="frame", leave=False)
    ]
    with files.atomic_path(path) as tmp:
        duration = max(round(1000 / fps), 10)  # GIF delays are whole centiseconds
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
        )
    ffmpeg = shutil.which("ffmpeg") if mp4 else None
    mp4_path = path.with_suffix(".mp4")
    return [path, mp4_path] if ffmpeg and _write_mp4(ffmpeg, images, mp4_path, fps) else [path]
