"""Pictures of a dataset: one example's 2D and 3D skeleton, and the split's sanity checks.

plot_example(example, frame, path)   the 2D keypoints over the image frame (coloured by score)
                                     beside the 3D pose (camera frame, root-relative)
plot_data_checks(summary, path)      bone lengths, reprojection error and frames per action
                                     from `gentg_jax.data.checks.summarize`
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.mplot3d.art3d import Line3DCollection

from gentg_jax import skeleton
from gentg_jax.viz.plots import _save_figure
from gentg_jax.viz.scene import _LIMB_COLOURS, _SCORE_CMAP, _segments, camera_to_plot


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def plot_example(
    example: Mapping[str, Any], frame: int, path: str | os.PathLike, *, dpi: int = 100
) -> pathlib.Path:
    """One frame of a dataset example: 2D keypoints in the image (pixels, y down; joints
    coloured by score) and the 3D pose, root-relative, upright. Returns `path`."""
    keypoints = np.asarray(example["keypoints_2d"], np.float64)
    if not 0 <= frame < len(keypoints):
        raise ValueError(f"frame {frame} is out of range for an example of {len(keypoints)}")
    width, height = (float(v) for v in np.asarray(example["image_size"]))
    scores = np.asarray(example.get("scores", np.ones(keypoints.shape[:2])), np.float64)
    name = "/".join(_text(example[k]) for k in ("subject", "action", "camera") if k in example)
    figure = Figure(figsize=(8.0, 4.0), dpi=dpi, layout="constrained")
    figure.suptitle(f"{name}, frame {frame}", fontsize=11)
    ax = figure.add_subplot(1, 2, 1)
    ax.add_patch(Rectangle((0, 0), width, height, fill=False, ec="0.4", lw=1, ls="--"))
    ax.add_collection(LineCollection(_segments(keypoints[frame]), colors=_LIMB_COLOURS))
    points = ax.scatter(
        *keypoints[frame].T, c=scores[frame], cmap=_SCORE_CMAP, vmin=0, vmax=1, s=18, zorder=3
    )
    figure.colorbar(points, ax=ax, shrink=0.7, label="score")
    margin = 0.05 * width
    ax.set(xlim=(-margin, width + margin), ylim=(height + margin, -margin), aspect="equal")
    ax.set_title("2D keypoints in the image (pixels)", fontsize=10)
    ax.tick_params(labelsize=7)
    pose = np.asarray(example["pose_3d"], np.float64)[frame]
    pose = camera_to_plot(pose - pose[skeleton.ROOT])
    ax3 = figure.add_subplot(1, 2, 2, projection="3d")
    ax3.add_collection3d(Line3DCollection(_segments(pose), colors=_LIMB_COLOURS, linewidths=2))
    ax3.scatter(*pose.T, s=14, color="0.2", depthshade=False)
    half = max(float(np.abs(pose).max()), 0.1) * 1.05
    ax3.set(xlim=(-half, half), ylim=(-half, half), zlim=(-half, half))
    ax3.set_box_aspect((1, 1, 1))
    ax3.view_init(elev=12, azim=-70)
    ax3.set_title("3D pose (m, root-relative)", fontsize=10)
    ax3.tick_params(labelsize=6)
    for axis in (ax3.xaxis, ax3.yaxis, ax3.zaxis):
        axis.set_major_locator(MaxNLocator(3))
    return _save_figure(figure, path)


def plot_data_checks(
    summary: Mapping[str, Any], path: str | os.PathLike, *, dpi: int = 100
) -> pathlib.Path:
    """Three panels from `data.checks.summarize`: mean bone length per limb with its largest
    within-sequence spread, the reprojection error (median, 95th percentile, max) and frames per
    action. Returns `path`."""
    figure = Figure(figsize=(12.0, 3.6), dpi=dpi, layout="constrained")
    ax = figure.add_subplot(1, 3, 1)
    names = [skeleton.JOINT_NAMES[child] for _, child in skeleton.LIMBS]
    lengths, spread = summary["bone_length_mm"], summary["bone_length_spread_mm"]
    ax.bar(np.arange(len(lengths)), lengths, yerr=spread, color=_LIMB_COLOURS, capsize=2)
    ax.set_xticks(np.arange(len(lengths)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("length (mm)")
    ax.set_title(f"bone lengths (largest spread {max(spread):.2g} mm)", fontsize=10)
    ax = figure.add_subplot(1, 3, 2)
    reprojection = summary["reprojection_px"]
    bars = ax.bar(list(reprojection), list(reprojection.values()), color="tab:purple")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_ylabel("pixels")
    ax.set_title("2D vs projected 3D (reprojection error)", fontsize=10)
    ax = figure.add_subplot(1, 3, 3)
    frames = summary["frames_per_action"]
    ax.bar(list(frames), list(frames.values()), color="tab:gray")
    ax.set_xticks(np.arange(len(frames)), list(frames), rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("frames (all cameras)")
    ax.set_title(f"{summary['frames']} frames in {summary['sequences']} sequences", fontsize=10)
    for ax in figure.axes:
        ax.grid(axis="y", alpha=0.3)
    return _save_figure(figure, path)
