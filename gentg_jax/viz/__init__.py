"""Pictures: skeleton animations and stills of inference results, evaluation plots.

animation.py  GIF/MP4 animations and PNG stills of a result (`load_result`, `animate`, ...)
scene.py      the figure: 2D input, coarse and refined 3D panels
plots.py      evaluation plots (per-action bars, sigma calibration)
"""

from gentg_jax.viz.animation import (
    animate,
    load_result,
    render_frame,
    save_frames,
    validate_result,
)
from gentg_jax.viz.plots import (
    calibration_bins,
    plot_calibration,
    plot_evaluation,
    plot_per_action,
)
from gentg_jax.viz.scene import camera_to_plot

__all__ = [
    "animate",
    "calibration_bins",
    "camera_to_plot",
    "load_result",
    "plot_calibration",
    "plot_evaluation",
    "plot_per_action",
    "render_frame",
    "save_frames",
    "validate_result",
]
