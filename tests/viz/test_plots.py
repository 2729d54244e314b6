"""Evaluation plots (gentg_jax.viz.plots)."""

import numpy as np
import pytest
from PIL import Image

from gentg_jax import viz
from tests import helpers


def test_calibration_bins_against_hand_computed_means():
    sigma = [5.0, 1.0, 3.0, 2.0, 4.0, 6.0]
    error = [50.0, 10.0, 30.0, 20.0, 40.0, 60.0]
    bin_sigma, bin_error = viz.calibration_bins(sigma, error, num_bins=3)
    np.testing.assert_allclose(bin_sigma, [1.5, 3.5, 5.5])  # (1, 2), (3, 4), (5, 6)
    np.testing.assert_allclose(bin_error, [15.0, 35.0, 55.0])
    bin_sigma, bin_error = viz.calibration_bins([3.0, 1.0], [2.0, 4.0], num_bins=10)
    np.testing.assert_allclose(bin_sigma, [1.0, 3.0])  # already binned: kept, sorted by sigma
    np.testing.assert_allclose(bin_error, [4.0, 2.0])
    with pytest.raises(ValueError, match=r"equal shape \(N,\).*\(3,\) and \(2,\)"):
        viz.calibration_bins([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite and non-negative"):
        viz.calibration_bins([1.0, np.nan], [1.0, 2.0])


def test_evaluation_plots(tmp_path):
    tgt = {"Walking": 45.0, "Eating": 50.0, "Average": 47.5}
    refined = {"Walking": 43.0, "Eating": 48.0}  # no summary row: it is recomputed anyway
    path = viz.plot_per_action({"tgt": tgt, "refined": refined}, tmp_path / "p1.png")
    rng = np.random.default_rng(1)
    sigma = rng.uniform(5, 80, 2000)
    error = np.abs(rng.normal(0, sigma))
    calibration = viz.plot_calibration(sigma, error, tmp_path / "cal.png", dpi=50)
    for png in (path, calibration):
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 100
    with pytest.raises(ValueError, match=r"'refined' has no value for action\(s\) \['Sitting'\]"):
        viz.plot_per_action({"tgt": {**tgt, "Sitting": 60.0}, "refined": refined}, path)
    with pytest.raises(ValueError, match="'tgt' action 'Walking' has value 'x'"):
        viz.plot_per_action({"tgt": {"Walking": "x"}}, path)


def test_plot_evaluation_sections(tmp_path):
    names = [p.name for p in viz.plot_evaluation(helpers.evaluation_dict(), tmp_path / "a")]
    assert names == ["per_action_p1.png", "per_action_p2.png", "calibration.png"]
    evaluation = helpers.evaluation_dict(with_p2=False)
    del evaluation["calibration"]
    assert [p.name for p in viz.plot_evaluation(evaluation, tmp_path / "b")] == [
        "per_action_p1.png"
    ]
    with pytest.raises(ValueError, match="no 'per_action' or 'calibration'"):
        viz.plot_evaluation({"p1": 3.0}, tmp_path)
    evaluation["per_action"]["tgt"]["Walking"] = {"p2": 30.0}
    with pytest.raises(ValueError, match="needs a 'p1'"):
        viz.plot_evaluation(evaluation, tmp_path)
    with pytest.raises(ValueError, match="'sigma_mm' and 'error_mm'"):
        viz.plot_evaluation({"calibration": {"sigma_mm": [1.0]}}, tmp_path)


def test_joint_pck_and_resampling_plots(tmp_path):
    rng = np.random.default_rng(0)
    per_joint = {"tgt": rng.uniform(20, 90, 17).tolist(), "refined": rng.uniform(20, 90, 17)}
    thresholds = np.linspace(0, 150, 31)
    pck = {"thresholds_mm": thresholds, "tgt": 100 * (1 - np.exp(-thresholds / 50))}
    summary = {
        "resampled_error_before": 80.0,
        "resampled_error_after": 70.0,
        "kept_error_before": 40.0,
        "kept_error_after": 40.0,
        "resampled_fraction": 0.3,
    }
    paths = [
        viz.plot_joint_errors(per_joint, tmp_path / "joints.png"),
        viz.plot_pck_curve(pck, tmp_path / "pck.png"),
        viz.plot_resampling(summary, tmp_path / "resampling.png"),
    ]
    for png in paths:
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 300
    with pytest.raises(ValueError, match="'tgt' has 16 joint errors"):
        viz.plot_joint_errors({"tgt": [1.0] * 16}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'tgt' has 3 values for 31 thresholds"):
        viz.plot_pck_curve({"thresholds_mm": thresholds, "tgt": [1, 2, 3]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="not a refining evaluation"):
        viz.plot_resampling({"p1": 50.0}, tmp_path / "x.png")
