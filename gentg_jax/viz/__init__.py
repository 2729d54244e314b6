"""Pictures: skeleton animations and stills of inference results, evaluation plots.

animation.py  GIF/MP4 animations and PNG stills of a result (`load_result`, `animate`, ...)
scene.py      the figure: 2D input, coarse and refined 3D panels
plots.py      evaluation plots (per-action bars, sigma calibration, error by joint, 3DPCK curve,
              resampled vs kept joints)
training.py   training curves from metrics.jsonl rows
dataset.py    a dataset example's 2D and 3D skeleton, and the split's sanity checks
"""

from gentg_jax.viz.animation import (
    animate,
    load_result,
    render_frame,
    save_frames,
    validate_result,
)
from gentg_jax.viz.dataset import plot_data_checks, plot_example
from gentg_jax.viz.plots import (
    calibration_bins,
    plot_calibration,
    plot_evaluation,
    plot_joint_errors,
    plot_pck_curve,
    plot_per_action,
    plot_resampling,
)
from gentg_jax.viz.scene import camera_to_plot
from gentg_jax.viz.training import plot_training_curves

__all__ = [
    "animate",
    "calibration_bins",
    "camera_to_plot",
    "load_result",
    "plot_calibration",
    "plot_data_checks",
    "plot_evaluation",
    "plot_example",
    "plot_joint_errors",
    "plot_pck_curve",
    "plot_per_action",
    "plot_resampling",
    "plot_training_curves",
    "render_frame",
    "save_frames",
    "validate_result",
]
