"""Skeleton plots, animations (GIF, MP4) and evaluation plots.

A *result* is what `experiments/infer.py` writes (an npz), or any mapping with the same arrays:

  keypoints_2d     (T, 17, 2)  input 2D keypoints, pixels, H36M joint order, y down   required
  image_size       (2,)        (w, h) in pixels                                       required
  coarse_3d        (T, 17, 3)  metres, camera frame (x right, y down, z forward)      required
  uncertainty      (T, 17)     predicted sigma per joint, metres                      required
  scores           (T, 17)     2D confidences in [0, 1]                               optional
  refined_3d       (T, 17, 3)  metres, camera frame                                   optional
  ground_truth_3d  (T, 17, 3)  metres, camera frame                                   optional

3D poses are drawn root-relative (the root is subtracted per frame, so an absolute ground truth
lines up with the predictions) in plot axes (x, z, -y), where the person stands upright. Colour
scales and axis limits come from the whole sequence, so every frame shares them. Figures are
built on the Agg canvas directly (no pyplot): no display is needed and a notebook's backend is
left alone. Frames are blitted: the static background is drawn once and only the skeletons and
titles are redrawn per frame.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging
from matplotlib import cm, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.mplot3d.art3d import Line3DCollection
from PIL import Image

from gentg_jax import skeleton

_J = skeleton.NUM_JOINTS
# Shape after the frame axis of every per-frame array; keypoints_2d (first) fixes T.
_FRAME_ARRAYS = {
    "keypoints_2d": (_J, 2),
    "coarse_3d": (_J, 3),
    "uncertainty": (_J,),
    "scores": (_J,),
    "refined_3d": (_J, 3),
    "ground_truth_3d": (_J, 3),
}
_REQUIRED_KEYS = ("keypoints_2d", "image_size", "coarse_3d", "uncertainty")
_POSE_PANELS = {"coarse": "coarse_3d", "refined": "refined_3d", "ground truth": "ground_truth_3d"}
_SUMMARY_ACTIONS = frozenset({"average", "avg", "mean", "all"})

_PANEL_IN, _HEIGHT_IN, _COLORBAR_IN = 3.0, 3.3, 0.9  # figure geometry, inches
_SIGMA_CMAP, _SCORE_CMAP = "viridis", "RdYlGn"


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


def camera_to_plot(points: np.ndarray) -> np.ndarray:
    """Camera frame (x right, y down, z forward) -> plot axes (x right, z away, -y up).

    A rotation (determinant +1): the pose is neither mirrored nor stretched.
    """
    points = np.asarray(points)
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def _segments(points: np.ndarray) -> np.ndarray:
    """(17, C) joints -> (16, 2, C) limb segments."""
    return np.stack([points[skeleton.LIMB_PARENTS], points[skeleton.LIMB_CHILDREN]], axis=1)


# Limb i ends at joint i + 1: blue for the subject's left, red for the right, grey in between.
_LIMB_COLOURS = [
    "tab:blue" if c in skeleton.JOINTS_LEFT else "tab:red" if c in skeleton.JOINTS_RIGHT else "0.35"
    for _, c in skeleton.LIMBS
]


@contextlib.contextmanager
def _atomic(path: pathlib.Path) -> Iterator[pathlib.Path]:
    """Yields a temporary sibling of `path` (same suffix) that becomes `path` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Scene:
    """One figure (2D input + one 3D panel per pose) whose skeletons are updated per frame."""

    def __init__(self, data: dict[str, np.ndarray], dpi: int):
        self._data, self.num_frames = data, len(data["keypoints_2d"])
        root = slice(skeleton.ROOT, skeleton.ROOT + 1)
        self._poses = {
            name: camera_to_plot(data[key] - data[key][:, root])
            for name, key in _POSE_PANELS.items()
            if key in data
        }
        truth = self._poses.get("ground truth")
        self._errors_mm = {
            name: 1000 * np.linalg.norm(pose - truth, axis=-1).mean(-1)
            for name, pose in self._poses.items()
            if truth is not None and name != "ground truth"
        }
        self._sigma_mm = 1000 * data["uncertainty"]
        self._norm = colors.Normalize(0.0, max(float(self._sigma_mm.max()), 1e-3))
        self._width_in = (1 + len(self._poses)) * _PANEL_IN + _COLORBAR_IN
        self.figure = Figure(figsize=(self._width_in, _HEIGHT_IN), dpi=dpi)
        FigureCanvasAgg(self.figure)
        self._title = self.figure.suptitle("", fontsize=9)
        # Artists that change per frame, in drawing order; the rest is the cached background.
        self._animated: list[Any] = [self._title]
        self._background = None
        self._build_2d()
        centre, half = self._limits_3d()
        self._panels = {
            name: self._build_3d(name, i + 1, centre, half) for i, name in enumerate(self._poses)
        }
        left = (self._width_in - _COLORBAR_IN + 0.15) / self._width_in
        cax = self.figure.add_axes((left, 0.15, 0.12 / self._width_in, 0.66))
        bar = self.figure.colorbar(cm.ScalarMappable(self._norm, _SIGMA_CMAP), cax=cax)
        bar.set_label("predicted sigma (mm)", fontsize=7)
        bar.ax.tick_params(labelsize=6)

    def _rect(self, index: int) -> tuple[float, float, float, float]:
        margin = 0.35 if index == 0 else 0.05  # the 2D panel needs room for its tick labels
        left, width = index * _PANEL_IN + margin, _PANEL_IN - margin - 0.05
        return (left / self._width_in, 0.08, width / self._width_in, 0.8)

    def _limits_3d(self) -> tuple[np.ndarray, float]:
        """A cube around every pose of every frame: one centre, one half side for all axes."""
        points = np.concatenate([pose.reshape(-1, 3) for pose in self._poses.values()])
        low, high = points.min(0), points.max(0)
        return (low + high) / 2, max(float((high - low).max()) / 2, 0.1) * 1.05

    def _build_2d(self) -> None:
        ax = self.figure.add_axes(self._rect(0))
        width, height = self._data["image_size"]
        ax.set(xlim=(0, width), ylim=(height, 0), aspect="equal")  # image rows grow downwards
        ax.tick_params(labelsize=6)
        scored = "scores" in self._data
        ax.set_title("2D input" + (" (colour: score)" if scored else ""), fontsize=8)
        keypoints = self._data["keypoints_2d"][0]
        lines = LineCollection(_segments(keypoints), colors=_LIMB_COLOURS)
        ax.add_collection(lines, autolim=False)
        style = (
            {"c": self._data["scores"][0], "cmap": _SCORE_CMAP, "vmin": 0, "vmax": 1}
            if scored
            else {"c": "0.35"}
        )
        joints = ax.scatter(*keypoints.T, s=10, edgecolors="k", lw=0.3, zorder=3, **style)
        self._lines_2d, self._joints_2d = lines, joints
        self._animated += [lines, joints]

    def _build_3d(self, name: str, index: int, centre: np.ndarray, half: float) -> dict[str, Any]:
        ax = self.figure.add_axes(self._rect(index), projection="3d")
        ax.view_init(elev=12, azim=-70)
        ax.set_title(name, fontsize=8)
        ax.set(xlim=centre[0] + (-half, half), ylim=centre[1] + (-half, half))
        ax.set_zlim(centre[2] - half, centre[2] + half)
        ax.set_box_aspect((1, 1, 1))
        for axis, label in zip((ax.xaxis, ax.yaxis, ax.zaxis), ("x", "depth", "up"), strict=True):
            axis.set_major_locator(MaxNLocator(3))
            axis.set_label_text(label, fontsize=7)
        ax.tick_params(labelsize=5, pad=0)
        pose = self._poses[name][0]
        limbs = Line3DCollection(_segments(pose), colors=_LIMB_COLOURS, linewidths=1.5)
        ax.add_collection3d(limbs, autolim=False)
        coloured = name != "ground truth"  # the sigma belongs to the prediction
        style = (
            {"c": self._sigma_mm[0], "cmap": _SIGMA_CMAP, "norm": self._norm}
            if coloured
            else {"c": "0.2"}
        )
        joints = ax.scatter(*pose.T, s=14, depthshade=False, edgecolors="k", lw=0.3, **style)
        self._animated += [ax.title, limbs, joints]
        return {"ax": ax, "limbs": limbs, "joints": joints, "coloured": coloured}

    def update(self, t: int) -> None:
        self._title.set_text(f"frame {t}")
        keypoints = self._data["keypoints_2d"][t]
        self._lines_2d.set_segments(_segments(keypoints))
        self._joints_2d.set_offsets(keypoints)
        if "scores" in self._data:
            self._joints_2d.set_array(self._data["scores"][t])
        for name, panel in self._panels.items():
            pose = self._poses[name][t]
            panel["limbs"].set_segments(_segments(pose))
            panel["joints"].set_offsets(pose[:, :2])
            if panel["coloured"]:
                panel["joints"].set_array(self._sigma_mm[t])
            panel["joints"].set_3d_properties(pose[:, 2], "z")
            error = f" ({self._errors_mm[name][t]:.0f} mm)" if name in self._errors_mm else ""
            panel["ax"].title.set_text(name + error)  # set_title would reset its position

    def render(self, t: int) -> np.ndarray:
        """Frame t as RGB (H, W, 3) uint8: the cached background plus the changing artists."""
        self.update(t)
        canvas = self.figure.canvas
        if self._background is None:
            for artist in self._animated:
                artist.set_animated(True)  # left out of full draws
            canvas.draw()  # also fixes each 3D axes' projection matrix, which never changes
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        else:
            canvas.restore_region(self._background)
        for artist in self._animated:
            if hasattr(artist, "do_3d_projection"):
                artist.do_3d_projection()
            self.figure.draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _check_frame(t: int, num_frames: int) -> int:
    if not 0 <= t < num_frames:
        raise ValueError(f"frame {t} is out of range for a result with {num_frames} frames")
    return int(t)


def render_frame(result: Mapping[str, Any], frame: int, *, dpi: int = 100) -> np.ndarray:
    """One frame as an RGB image (H, W, 3) uint8, e.g. for `plt.imshow` in a notebook."""
    scene = _Scene(validate_result(result), dpi)
    return scene.render(_check_frame(frame, scene.num_frames))


def save_frames(
    result: Mapping[str, Any], out_dir: str | os.PathLike, frames: Sequence[int], *, dpi: int = 100
) -> list[pathlib.Path]:
    """Writes one PNG per frame index, `out_dir/frame_00012.png`; returns their paths."""
    data = validate_result(result)
    if not frames:
        raise ValueError("save_frames needs at least one frame index")
    scene = _Scene(data, dpi)
    paths = []
    for t in [_check_frame(t, scene.num_frames) for t in frames]:
        paths.append(pathlib.Path(out_dir) / f"frame_{t:05d}.png")
        with _atomic(paths[-1]) as tmp:
            Image.fromarray(scene.render(t)).save(tmp, format="PNG")
    return paths


def _write_mp4(ffmpeg: str, images: list[Image.Image], path: pathlib.Path, fps: float) -> bool:
    """Pipes the frames through ffmpeg into an MP4; a failure is logged and leaves no file."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s"]
    command += [f"{images[0].width}x{images[0].height}", "-r", f"{fps}", "-i", "-"]
    # yuv420p (what players expect) needs even sides, hence the pad.
    command += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", str(tmp)]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe, so ffmpeg never blocks on it
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=log)
        except OSError as error:
            logging.warning("could not run %s, no MP4 written: %s", ffmpeg, error)
            return False
        with contextlib.suppress(BrokenPipeError):  # ffmpeg exited early: reported below
            for image in images:
                process.stdin.write(image.convert("RGB").tobytes())
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        if process.wait() == 0:
            os.replace(tmp, path)
            return True
        log.seek(0)
        message = log.read().decode(errors="replace").strip()[-1000:]
    logging.warning("ffmpeg exited with %d, no MP4 written: %s", process.returncode, message)
    tmp.unlink(missing_ok=True)
    return False


def animate(
    result: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    fps: float = 25.0,
    max_frames: int | None = None,
    stride: int = 1,
    dpi: int = 72,
    mp4: bool = True,
) -> list[pathlib.Path]:
    """Writes an animated GIF, and `path` with suffix .mp4 too when `mp4` and ffmpeg is on PATH.

    Args:
      result: a result mapping (see the module docstring), e.g. from `load_result`.
      path: the GIF to write; must end in .gif.
      fps: playback frames per second.
      max_frames: render at most this many frames (the first ones after striding).
      stride: render every `stride`-th frame (50 Hz Human3.6M at stride 2 plays at 25 fps).
      dpi: figure resolution; 72 gives 928 x 237 pixels with all four panels.
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
    scene = _Scene(validate_result(result), dpi)
    images = [
        Image.fromarray(scene.render(t)).quantize(255, method=Image.Quantize.FASTOCTREE)
        for t in range(0, scene.num_frames, stride)[:max_frames]
    ]
    with _atomic(path) as tmp:
        duration = max(round(1000 / fps), 10)  # GIF delays are whole centiseconds
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
        )
    ffmpeg = shutil.which("ffmpeg") if mp4 else None
    mp4_path = path.with_suffix(".mp4")
    return [path, mp4_path] if ffmpeg and _write_mp4(ffmpeg, images, mp4_path, fps) else [path]


def _save_figure(figure: Figure, path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    with _atomic(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def _clean_table(method: str, table: Any) -> dict[str, float]:
    """Drops summary rows (the mean is recomputed) and checks that every value is a number."""
    if not isinstance(table, Mapping):
        raise ValueError(f"per-action results of '{method}' must map action -> mm, got {table!r}")
    clean = {}
    for action, value in table.items():
        if action.lower() in _SUMMARY_ACTIONS:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise ValueError(f"'{method}' action '{action}' has value {value!r}; expected mm")
        clean[action] = float(value)
    if not clean:
        raise ValueError(f"'{method}' has no per-action values")
    return clean


def plot_per_action(
    results: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    *,
    ylabel: str = "P1 (mm)",
    dpi: int = 100,
) -> pathlib.Path:
    """Grouped bars per action, one bar per method, then the mean over actions; returns `path`.

    Args:
      results: method -> {action: value in mm}, e.g. {"tgt": {...}, "refined": {...}}. Rows named
        average/avg/mean/all are ignored: the last group is recomputed as the unweighted mean over
        actions, as the protocol reports it. Every method must cover the same actions.
      path: the PNG to write.
      ylabel: the metric's axis label.
      dpi: image resolution.
    """
    if not results:
        raise ValueError("plot_per_action needs at least one method")
    tables = {method: _clean_table(method, table) for method, table in results.items()}
    actions = sorted(set().union(*tables.values()), key=str.lower)
    for method, table in tables.items():
        if missing := [action for action in actions if action not in table]:
            raise ValueError(f"'{method}' has no value for action(s) {missing}")
    x, width = np.arange(len(actions) + 1), 0.8 / len(tables)
    size = (max(6.0, 0.45 * len(x) * len(tables)), 3.6)
    figure = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = figure.add_subplot()
    for i, (method, table) in enumerate(tables.items()):
        values = [table[action] for action in actions]
        mean = float(np.mean(values))
        offset = (i - (len(tables) - 1) / 2) * width
        bars = ax.bar(x + offset, [*values, mean], width, label=method)
        ax.bar_label(bars, labels=[""] * len(values) + [f"{mean:.1f}"], fontsize=7)
    ax.set_xticks(x, [*actions, "Average"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never on bars
    return _save_figure(figure, path)


def calibration_bins(
    sigma: Sequence[float] | np.ndarray, error: Sequence[float] | np.ndarray, num_bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Sorts (sigma, error) pairs by sigma into equal-count bins; returns each bin's means.

    With no more pairs than bins every pair is its own bin, so already-binned input (one mean
    sigma and one mean error per bin) passes through unchanged (sorted by sigma).
    """
    sigma, error = np.asarray(sigma, np.float64), np.asarray(error, np.float64)
    if sigma.ndim != 1 or sigma.shape != error.shape or not len(sigma):
        raise ValueError(
            f"calibration needs sigma and error of equal shape (N,), N >= 1; got {sigma.shape} "
            f"and {error.shape}"
        )
    values = np.concatenate([sigma, error])
    if not np.all(np.isfinite(values) & (values >= 0)):
        raise ValueError("calibration sigma and error must be finite and non-negative")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    bins = np.array_split(np.argsort(sigma, kind="stable"), min(num_bins, len(sigma)))
    return np.array([sigma[b].mean() for b in bins]), np.array([error[b].mean() for b in bins])


def plot_calibration(
    sigma_mm: Sequence[float] | np.ndarray,
    error_mm: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    *,
    num_bins: int = 10,
    dpi: int = 100,
) -> pathlib.Path:
    """Actual error against predicted sigma (both mm): the pairs, their binned means, y = x."""
    bin_sigma, bin_error = calibration_bins(sigma_mm, error_mm, num_bins)
    sigma, error = np.asarray(sigma_mm, np.float64), np.asarray(error_mm, np.float64)
    figure = Figure(figsize=(4.2, 4.0), dpi=dpi, layout="constrained")
    ax = figure.add_subplot()
    shown = slice(None, None, max(1, len(sigma) // 5000))  # thin out large sets, deterministically
    ax.scatter(sigma[shown], error[shown], s=3, color="0.6", alpha=0.3, lw=0, label="joints")
    ax.plot(bin_sigma, bin_error, "o-", color="tab:orange", label=f"{len(bin_sigma)} bins (mean)")
    # Scaled to the binned means, not to the widest single errors, which would squeeze them.
    top = 1.25 * max(np.percentile(sigma, 99), bin_sigma.max(), bin_error.max(), 1e-3)
    ax.plot([0, top], [0, top], "k--", lw=1, label="y = x")
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="predicted sigma (mm)", ylabel="error (mm)")
    if np.std(sigma) > 0 and np.std(error) > 0:
        ax.set_title(f"Pearson r = {np.corrcoef(sigma, error)[0, 1]:.2f}", fontsize=9)
    ax.legend(fontsize=8)
    return _save_figure(figure, path)


def _metric_tables(per_action: Mapping[str, Any], metric: str) -> dict[str, dict] | None:
    """method -> {action: value} for one metric; None unless every entry has that metric."""
    tables = {}
    for method, actions in per_action.items():
        entries = actions.values() if isinstance(actions, Mapping) else [None]
        if not all(isinstance(entry, Mapping) for entry in entries):
            raise ValueError(f"per_action['{method}'] must map action -> {{'p1': mm, ...}}")
        if not all(metric in entry for entry in entries):
            return None
        tables[method] = {action: entry[metric] for action, entry in actions.items()}
    return tables


def per_action_from_tables(tables: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{action: {"p1": mm, "p2": mm}} from protocol tables as `gentg_jax.evaluation` writes them:
    {"P1": {"actions": {action: mm}, ...}, "P2": {...}, ...}, P2 optional."""
    try:
        p1 = tables["P1"]["actions"]
    except (KeyError, TypeError) as error:
        raise ValueError("evaluation tables need a 'P1' table with 'actions'") from error
    p2 = tables.get("P2", {}).get("actions", {})
    return {
        action: {"p1": mm, **({"p2": p2[action]} if action in p2 else {})}
        for action, mm in p1.items()
    }


def plot_evaluation(
    evaluation: Mapping[str, Any], out_dir: str | os.PathLike
) -> list[pathlib.Path]:
    """Plots an evaluation dict (the JSON shape documented in experiments/visualize.py).

    Writes `per_action_p1.png`, `per_action_p2.png` (when every entry has a p2) and
    `calibration.png` (when there is a calibration section); returns the paths written.
    """
    per_action, calibration = evaluation.get("per_action"), evaluation.get("calibration")
    if per_action is None and calibration is None:
        raise ValueError(
            f"evaluation has no 'per_action' or 'calibration'; has {sorted(evaluation)}"
        )
    out_dir, paths = pathlib.Path(out_dir), []
    if per_action is not None:
        if not isinstance(per_action, Mapping) or not per_action:
            raise ValueError("evaluation['per_action'] must map method -> {action: {'p1': mm}}")
        if _metric_tables(per_action, "p1") is None:
            raise ValueError("every evaluation['per_action'] entry needs a 'p1'")
        for metric in ("p1", "p2"):
            if (tables := _metric_tables(per_action, metric)) is not None:
                path = out_dir / f"per_action_{metric}.png"
                paths.append(plot_per_action(tables, path, ylabel=f"{metric.upper()} (mm)"))
    if calibration is not None:
        if not isinstance(calibration, Mapping) or not {"sigma_mm", "error_mm"} <= set(calibration):
            raise ValueError("evaluation['calibration'] must hold 'sigma_mm' and 'error_mm' lists")
        sigma, error = calibration["sigma_mm"], calibration["error_mm"]
        paths.append(plot_calibration(sigma, error, out_dir / "calibration.png"))
    return paths
