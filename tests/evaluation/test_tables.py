"""Uncertainty statistics of the evaluation tables, against closed-form answers."""

import numpy as np
import pytest

from gentg_jax.evaluation import tables


def test_sigma_statistics_skip_the_root_and_measure_the_scale():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.01, 0.2, (500, 17))
    error = 2.0 * sigma
    sigma[:, 0], error[:, 0] = 5.0, 0.0  # the root: its error is 0 by construction
    assert tables.sigma_error_correlation(sigma, error) == pytest.approx(1.0)
    assert tables.sigma_calibration_slope(sigma, error) == pytest.approx(2.0)
    noise = rng.normal(0.0, 0.05, error.shape)
    assert 0.3 < tables.sigma_error_correlation(sigma, np.abs(error + noise)) < 0.99
    assert tables.sigma_error_correlation(np.ones((3, 17)), error[:3]) == 0.0


def test_correlation_ceiling_is_what_calibrated_gaussian_errors_reach():
    rng = np.random.default_rng(1)
    sigma = rng.lognormal(np.log(0.08), 0.4, (40_000, 17))
    # Isotropic 3D Gaussian errors whose RMS is exactly sigma: the ceiling's own assumption.
    vectors = rng.normal(size=sigma.shape + (3,)) * (sigma / np.sqrt(3.0))[..., None]
    error = np.linalg.norm(vectors, axis=-1)
    measured = tables.sigma_error_correlation(sigma, error)
    assert tables.sigma_correlation_ceiling(sigma) == pytest.approx(measured, abs=0.01)
    assert tables.sigma_calibration_slope(sigma, error) == pytest.approx(1.0, abs=0.01)
    # A wider spread of sigma raises the ceiling; a constant sigma ranks nothing.
    wider = rng.lognormal(np.log(0.08), 0.8, sigma.shape)
    assert tables.sigma_correlation_ceiling(wider) > tables.sigma_correlation_ceiling(sigma) + 0.1
    assert tables.sigma_correlation_ceiling(np.full((4, 17), 0.05)) == 0.0
