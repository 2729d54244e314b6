"""Training curves from metrics.jsonl rows (gentg_jax.viz.training)."""

import pytest
from PIL import Image

from gentg_jax import viz


def test_training_curves_plot_the_panels_the_rows_have(tmp_path):
    rows = [
        {"step": s, "train/loss": 1 / s, "train/learning_rate": 1e-3, "train/grad_norm": 2.0}
        for s in range(10, 110, 10)
    ]
    rows[-1] |= {"eval/p1": 80.0, "eval/p2": 60.0, "eval/sigma_error_corr": 0.4}
    path = viz.plot_training_curves(rows, tmp_path / "curves.png", title="run")
    with Image.open(path) as image:  # 5 panels on 3 columns: two rows
        assert image.format == "PNG" and image.size == (1260, 600)
    with pytest.raises(ValueError, match=r"no training or evaluation scalars.*\['step', 'x'\]"):
        viz.plot_training_curves([{"step": 1, "x": 2.0}], tmp_path / "none.png")
