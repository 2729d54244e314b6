"""The figure that animations and stills are drawn on: the 2D input and one 3D panel per pose.

3D poses are drawn root-relative (the root is subtracted per frame, so an absolute ground truth
lines up with the predictions) in plot axes (x, z, -y), where the person stands upright. Colour
scales and axis limits come from the whole sequence, so every frame shares them. The 2D joints
are coloured by their score (a colour bar under the panel), the predicted joints by sigma; with a
`resampled` array the refined panel rings the joints the corrector resampled. The figure is
built on the Agg canvas directly (no pyplot): no display is needed and a notebook's backend is
left alone. Frames are blitted: the static background is drawn once and only the skeletons and
titles are redrawn per frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import cm, colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mpl_toolkits.mplot3d.art3d import Line3DCollection

from gentg_jax import skeleton

_POSE_PANELS = {"coarse": "coarse_3d", "refined": "refined_3d", "ground truth": "ground_truth_3d"}
# Figure geometry, inches: at the animation's 100 dpi every panel is 300 px wide.
_PANEL_IN, _HEIGHT_IN, _COLORBAR_IN = 3.0, 3.3, 0.9
_SIGMA_CMAP, _SCORE_CMAP = "viridis", "RdYlGn"
_TITLE_PT, _LABEL_PT, _TICK_PT = 10, 8, 6.5  # font sizes
_RESAMPLED_COLOUR, _RESAMPLED_SIZE = "magenta", 90.0  # rings around resampled joints


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


class Scene:
    """One figure (2D input + one 3D panel per pose) whose skeletons are updated per frame.

    `data` holds a validated result's arrays (`viz.validate_result`).
    """

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
        self._title = self.figure.suptitle("", fontsize=_TITLE_PT + 1, y=0.99)
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
        bar.set_label("predicted sigma (mm)", fontsize=_LABEL_PT)
        bar.ax.tick_params(labelsize=_TICK_PT)

    def _rect(self, index: int) -> tuple[float, float, float, float]:
        margin = 0.4 if index == 0 else 0.05  # the 2D panel needs room for its tick labels
        left, width = index * _PANEL_IN + margin, _PANEL_IN - margin - 0.05
        bottom = 0.26 if index == 0 and "scores" in self._data else 0.08  # room for the score bar
        return (left / self._width_in, bottom, width / self._width_in, 0.88 - bottom)

    def _limits_3d(self) -> tuple[np.ndarray, float]:
        """A cube around every pose of every frame: one centre, one half side for all axes."""
        points = np.concatenate([pose.reshape(-1, 3) for pose in self._poses.values()])
        low, high = points.min(0), points.max(0)
        return (low + high) / 2, max(float((high - low).max()) / 2, 0.1) * 1.05

    def _build_2d(self) -> None:
        ax = self.figure.add_axes(self._rect(0))
        width, height = self._data["image_size"]
        ax.set(xlim=(0, width), ylim=(height, 0), aspect="equal")  # image rows grow downwards
        ax.tick_params(labelsize=_TICK_PT)
        scored = "scores" in self._data
        ax.set_title("2D input (pixels)", fontsize=_TITLE_PT)
        keypoints = self._data["keypoints_2d"][0]
        lines = LineCollection(_segments(keypoints), colors=_LIMB_COLOURS)
        ax.add_collection(lines, autolim=False)
        style = (
            {"c": self._data["scores"][0], "cmap": _SCORE_CMAP, "vmin": 0, "vmax": 1}
            if scored
            else {"c": "0.35"}
        )
        joints = ax.scatter(*keypoints.T, s=14, edgecolors="k", lw=0.3, zorder=3, **style)
        self._lines_2d, self._joints_2d = lines, joints
        self._animated += [lines, joints]
        if scored:  # a horizontal colour bar of the scores under the 2D panel
            left, _, width, _ = self._rect(0)
            cax = self.figure.add_axes((left + 0.3 * width, 0.09, 0.7 * width, 0.03))
            bar = self.figure.colorbar(joints, cax=cax, orientation="horizontal")
            bar.ax.set_ylabel("score", rotation=0, ha="right", va="center", fontsize=_LABEL_PT)
            bar.ax.tick_params(labelsize=_TICK_PT)

    def _build_3d(self, name: str, index: int, centre: np.ndarray, half: float) -> dict[str, Any]:
        ax = self.figure.add_axes(self._rect(index), projection="3d")
        ax.view_init(elev=12, azim=-70)
        ax.set_title(name, fontsize=_TITLE_PT)
        ax.set(xlim=centre[0] + (-half, half), ylim=centre[1] + (-half, half))
        ax.set_zlim(centre[2] - half, centre[2] + half)
        ax.set_box_aspect((1, 1, 1))
        for axis, label in zip((ax.xaxis, ax.yaxis, ax.zaxis), ("x", "depth", "up"), strict=True):
            axis.set_major_locator(MaxNLocator(3))
            axis.set_label_text(label, fontsize=_LABEL_PT - 1)
            axis.labelpad = -4
        ax.tick_params(labelsize=_TICK_PT - 1, pad=-2)
        pose = self._poses[name][0]
        limbs = Line3DCollection(_segments(pose), colors=_LIMB_COLOURS, linewidths=1.5)
        ax.add_collection3d(limbs, autolim=False)
        coloured = name != "ground truth"  # the sigma belongs to the prediction
        style = (
            {"c": self._sigma_mm[0], "cmap": _SIGMA_CMAP, "norm": self._norm}
            if coloured
            else {"c": "0.2"}
        )
        joints = ax.scatter(*pose.T, s=18, depthshade=False, edgecolors="k", lw=0.3, **style)
        self._animated += [ax.title, limbs, joints]
        panel = {"ax": ax, "limbs": limbs, "joints": joints, "coloured": coloured}
        if name == "refined" and "resampled" in self._data:
            # Rings around the joints the corrector resampled (kept joints: size 0).
            rings = ax.scatter(
                *pose.T,
                s=self._ring_sizes(0),
                facecolors="none",
                edgecolors=_RESAMPLED_COLOUR,
                lw=1.3,
                depthshade=False,
            )
            self._animated.append(rings)
            panel["rings"] = rings
        return panel

    def _ring_sizes(self, t: int) -> np.ndarray:
        """Marker sizes of the resampled-joint rings: shown where most windows resampled."""
        return np.where(self._data["resampled"][t] >= 0.5, _RESAMPLED_SIZE, 0.0)

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
            if "rings" in panel:
                panel["rings"].set_offsets(pose[:, :2])
                panel["rings"].set_3d_properties(pose[:, 2], "z")
                panel["rings"].set_sizes(self._ring_sizes(t))
                error += f", rings: {int((self._data['resampled'][t] >= 0.5).sum())} resampled"
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
