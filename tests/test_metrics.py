"""Metrics against independent float64 numpy/scipy computations, closed forms and the protocol."""

import json
import warnings

import jax
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gentg_jax import metrics

ATOL = 1e-6  # metres


def _pose_batch(seed, shape=(2, 3), scale=0.3):
    """Random poses (*shape, 17, 3) float32, ~scale metres across, away from the origin."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(*shape, 17, 3)) * scale + [0.1, -0.2, 4.0]).astype(np.float32)


def _frames(x):
    return np.asarray(x, np.float64).reshape(-1, *np.shape(x)[-2:])


def _valid(mask, shape):
    return np.ones(shape[:-1], bool) if mask is None else np.broadcast_to(mask, shape[:-1]) > 0


def ref_mpjpe(pred, target, mask=None):
    valid = _valid(mask, np.shape(pred)).reshape(-1, np.shape(pred)[-2])
    out = []
    for p, t, v in zip(_frames(pred), _frames(target), valid, strict=True):
        out.append(np.mean([np.sqrt(np.sum((p[j] - t[j]) ** 2)) for j in np.flatnonzero(v)]))
    return np.array(out).reshape(np.shape(pred)[:-2])


def ref_p_mpjpe(pred, target, mask=None):
    """Per frame: scipy's Kabsch rotation (always proper), then the least-squares scale."""
    valid = _valid(mask, np.shape(pred)).reshape(-1, np.shape(pred)[-2])
    out = []
    for p, t, v in zip(_frames(pred), _frames(target), valid, strict=True):
        p, t = p[v], t[v]
        p0, t0 = p - p.mean(0), t - t.mean(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns that degenerate rotations are not unique
            rotation, _ = Rotation.align_vectors(t0, p0)
        rotated = rotation.apply(p0)
        scale = np.sum(rotated * t0) / np.sum(p0 * p0)
        out.append(np.linalg.norm(scale * rotated + t.mean(0) - t, axis=-1).mean())
    return np.array(out).reshape(np.shape(pred)[:-2])


def ref_n_mpjpe(pred, target, mask=None):
    valid = _valid(mask, np.shape(pred)).reshape(-1, np.shape(pred)[-2])
    out = []
    for p, t, v in zip(_frames(pred), _frames(target), valid, strict=True):
        scale = np.linalg.lstsq(p[v].reshape(-1, 1), t[v].reshape(-1), rcond=None)[0][0]
        out.append(np.linalg.norm(scale * p[v] - t[v], axis=-1).mean())
    return np.array(out).reshape(np.shape(pred)[:-2])


def ref_pck(pred, target, thresholds, mask=None):
    """Mean over thresholds of the percentage of valid joints strictly under each threshold."""
    valid = _valid(mask, np.shape(pred)).reshape(-1, np.shape(pred)[-2])
    out = []
    for p, t, v in zip(_frames(pred), _frames(target), valid, strict=True):
        dist = np.linalg.norm(p[v] - t[v], axis=-1)
        out.append(np.mean([100.0 * np.mean(dist < th) for th in thresholds]))
    return np.array(out).reshape(np.shape(pred)[:-2])


def _random_mask(seed, shape):
    mask = np.random.default_rng(seed).random(shape) > 0.3
    mask[..., :4] = True  # at least four joints per frame, so Procrustes stays well posed
    return mask.astype(np.float32)


@pytest.fixture(scope="module")
def poses():
    target = _pose_batch(0)
    pred = (target + np.random.default_rng(1).normal(size=target.shape) * 0.05).astype(np.float32)
    return pred, target, _random_mask(2, target.shape[:-1])


@pytest.mark.parametrize(
    "metric, reference",
    [
        (metrics.mpjpe, ref_mpjpe),
        (metrics.n_mpjpe, ref_n_mpjpe),
        (metrics.p_mpjpe, ref_p_mpjpe),
    ],
)
@pytest.mark.parametrize("masked", [False, True])
def test_errors_match_reference(poses, metric, reference, masked):
    pred, target, mask = poses
    mask = mask if masked else None
    out = metric(pred, target, mask=mask)
    assert out.shape == pred.shape[:-2]
    np.testing.assert_allclose(out, reference(pred, target, mask), rtol=0, atol=ATOL)


def test_p_mpjpe_unrelated_and_single_frame():
    pred, target = _pose_batch(3, (5,)), _pose_batch(4, (5,))
    np.testing.assert_allclose(
        metrics.p_mpjpe(pred, target), ref_p_mpjpe(pred, target), rtol=0, atol=ATOL
    )
    single = metrics.p_mpjpe(pred[0], target[0])
    assert single.shape == ()
    np.testing.assert_allclose(single, ref_p_mpjpe(pred[:1], target[:1])[0], rtol=0, atol=ATOL)


def _similarity_copy(target, seed):
    rotation = Rotation.random(random_state=seed).as_matrix()
    return (1.7 * target @ rotation.T + [0.3, -1.0, 2.0]).astype(np.float32)


def test_similarity_copy_has_zero_p_mpjpe(poses):
    _, target, _ = poses
    pred = _similarity_copy(target, 5)
    assert np.all(metrics.mpjpe(pred, target) > 0.1)
    np.testing.assert_allclose(metrics.p_mpjpe(pred, target), 0.0, atol=ATOL)
    aligned = metrics.procrustes_align(pred, target)
    np.testing.assert_allclose(aligned, target, atol=5 * ATOL)


def test_mirrored_copy_is_not_aligned_by_a_reflection(poses):
    _, target, _ = poses
    mirrored = target * np.float32([-1, 1, 1])
    errors = np.asarray(metrics.p_mpjpe(mirrored, target))
    np.testing.assert_allclose(errors, ref_p_mpjpe(mirrored, target), rtol=0, atol=ATOL)
    assert np.all(errors > 0.01)
    # An orthogonal map with det -1 would fit exactly: the metric must not allow it.
    for p, t in zip(_frames(mirrored), _frames(target), strict=True):
        p0, t0 = p - p.mean(0), t - t.mean(0)
        u, _, vt = np.linalg.svd(t0.T @ p0)
        assert np.abs(p0 @ (vt.T @ u.T) - t0).max() < 1e-5


def _adversarial_cases():
    """(name, pred, target) float64 frames that stress the SVD: collinear, coincident, planar."""
    rng = np.random.default_rng(7)
    axis_t, axis_p = rng.normal(size=(2, 4, 1, 3))
    axis_t /= np.linalg.norm(axis_t, axis=-1, keepdims=True)
    axis_p /= np.linalg.norm(axis_p, axis=-1, keepdims=True)
    s = rng.normal(size=(4, 17, 1))
    line_t, line_p = axis_t * s + 1.0, axis_p * (s + 0.1 * rng.normal(size=s.shape))
    noise = rng.normal(size=(2, 4, 17, 3))
    target = rng.normal(size=(4, 17, 3)) * 0.3
    planar = target * [1, 1, 0]
    return [
        ("collinear", line_p, line_t),
        ("near collinear", line_p + 1e-4 * noise[0], line_t + 1e-4 * noise[1]),
        ("near coincident pred", 1.0 + 1e-7 * noise[0], target),
        ("near coincident target", target, 2.0 + 1e-7 * noise[1]),
        ("planar", planar + 0.05 * noise[0] * [1, 1, 0], planar),
        ("mirrored planar", planar * [-1, 1, 1], planar),
    ]


@pytest.mark.parametrize("case", range(len(_adversarial_cases())))
def test_p_mpjpe_adversarial_float64(case):
    name, pred, target = _adversarial_cases()[case]
    with jax.enable_x64(True):
        out = np.asarray(metrics.p_mpjpe(pred, target))
    assert out.dtype == np.float64, name
    np.testing.assert_allclose(out, ref_p_mpjpe(pred, target), rtol=0, atol=ATOL, err_msg=name)


def test_p_mpjpe_degenerate_float32_is_finite():
    target = _pose_batch(8, (4,))
    t0 = target - target.mean(-2, keepdims=True)
    # Coincident prediction: the best similarity shrinks it onto the target centroid.
    coincident = np.ones_like(target)
    np.testing.assert_allclose(
        metrics.p_mpjpe(coincident, target), np.linalg.norm(t0, axis=-1).mean(-1), atol=ATOL
    )
    zeros = np.zeros((17, 3), np.float32)
    assert float(metrics.p_mpjpe(zeros, zeros)) == 0.0
    assert float(metrics.n_mpjpe(zeros, target[0])) == pytest.approx(
        np.linalg.norm(target[0], axis=-1).mean(), abs=ATOL
    )
    # In float32 these are ill-conditioned; the result must stay finite and no worse than
    # mapping everything onto the target centroid (root-mean-square of the centred target).
    bound = np.sqrt(np.mean(np.sum(t0**2, -1), -1)) + ATOL
    for _, pred, _ in _adversarial_cases():
        out = np.asarray(metrics.p_mpjpe(pred.astype(np.float32), target))
        assert np.all(np.isfinite(out)) and np.all(out <= bound)


def test_n_mpjpe_scale_invariance(poses):
    pred, target, _ = poses
    base = np.asarray(metrics.n_mpjpe(pred, target))
    for factor in (0.25, 3.0):
        np.testing.assert_allclose(metrics.n_mpjpe(factor * pred, target), base, atol=ATOL)
    np.testing.assert_allclose(metrics.n_mpjpe(0.5 * target, target), 0.0, atol=ATOL)


def test_mpjve_matches_reference(poses):
    pred, target, mask = poses  # frames axis -3 has length 3
    out = np.asarray(metrics.mpjve(pred, target))
    assert out.shape == (2, 2)
    expected = np.linalg.norm(
        np.diff(pred.astype(np.float64), axis=-3) - np.diff(target.astype(np.float64), axis=-3),
        axis=-1,
    ).mean(-1)
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)
    masked = np.asarray(metrics.mpjve(pred, target, mask=mask))
    for b in range(2):
        for t in range(2):
            both = np.flatnonzero(mask[b, t] * mask[b, t + 1])
            velocity = (pred[b, t + 1] - pred[b, t]) - (target[b, t + 1] - target[b, t])
            value = np.linalg.norm(velocity[both].astype(np.float64), axis=-1).mean()
            assert masked[b, t] == pytest.approx(value, abs=ATOL)
    # A constant offset has no velocity error.
    np.testing.assert_allclose(metrics.mpjve(target + 0.3, target), 0.0, atol=ATOL)
    with pytest.raises(ValueError, match="T >= 2"):
        metrics.mpjve(pred[:, :1], target[:, :1])


def test_pck_and_auc_match_reference(poses):
    pred, target, mask = poses
    pred = target + (pred - target) * 3  # errors spread across the 0-150 mm range
    for m in (None, mask):
        np.testing.assert_allclose(
            metrics.pck3d(pred, target, mask=m), ref_pck(pred, target, [0.15], m), atol=1e-4
        )
        np.testing.assert_allclose(
            metrics.auc(pred, target, mask=m),
            ref_pck(pred, target, np.arange(31) * 0.005, m),
            atol=1e-4,
        )


def test_pck_closed_forms():
    target = _pose_batch(9, (1,))[0]
    assert float(metrics.pck3d(target, target)) == 100.0
    assert float(metrics.auc(target, target)) == pytest.approx(100 * 30 / 31)
    # Joint 0 at 149 mm, joint 1 at 151 mm, the rest exact: threshold 150 mm is strict.
    pred = target.copy()
    pred[0, 0] += 0.149
    pred[1, 1] += 0.151
    assert float(metrics.pck3d(pred, target)) == pytest.approx(100 * 16 / 17)
    assert float(metrics.pck3d(pred, target, threshold=0.1)) == pytest.approx(100 * 15 / 17)


def test_auc_bounded_and_monotone():
    target = _pose_batch(10, (1,))[0]
    direction = np.random.default_rng(11).normal(size=target.shape)
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    lengths = np.random.default_rng(12).random(17)[:, None] * 0.1
    values = []
    for step in np.linspace(0.0, 2.0, 9):
        pred = (target + step * lengths * direction).astype(np.float32)
        values.append(float(metrics.auc(pred, target)))
    assert all(0.0 <= v <= 100.0 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[0] > values[-1]


def test_masked_joints_are_ignored(poses):
    pred, target, mask = poses
    scrambled = np.where(mask[..., None] > 0, pred, pred + 10.0).astype(np.float32)
    for metric in (metrics.mpjpe, metrics.n_mpjpe, metrics.p_mpjpe, metrics.mpjve, metrics.auc):
        np.testing.assert_allclose(
            metric(scrambled, target, mask=mask), metric(pred, target, mask=mask), atol=ATOL
        )
    # A frame with no valid joint scores 0 rather than NaN; weighted_mean then skips it.
    empty = mask.copy()
    empty[0, 0] = 0
    for metric in (metrics.mpjpe, metrics.n_mpjpe, metrics.p_mpjpe, metrics.pck3d):
        out = np.asarray(metric(pred, target, mask=empty))
        assert np.all(np.isfinite(out)) and out[0, 0] == 0.0
    frame_mask = (empty.sum(-1) > 0).astype(np.float32)
    per_frame = np.asarray(metrics.mpjpe(pred, target, mask=empty))
    assert float(metrics.weighted_mean(per_frame, frame_mask)) == pytest.approx(
        per_frame[frame_mask > 0].mean(), abs=ATOL
    )
    assert float(metrics.weighted_mean(per_frame)) == pytest.approx(per_frame.mean(), abs=ATOL)


def test_metrics_inside_an_outer_jit(poses):
    pred, target, mask = poses

    @jax.jit
    def summary(p, t, m):
        per_frame = [
            metric(p, t, m) for metric in (metrics.mpjpe, metrics.n_mpjpe, metrics.p_mpjpe)
        ]
        per_frame += [metrics.pck3d(p, t, m, 0.1), metrics.auc(p, t, m)]
        return [metrics.weighted_mean(v) for v in per_frame] + [metrics.mpjve(p, t, m)]

    *means, velocity = summary(pred, target, mask)
    expected = [ref_mpjpe(pred, target, mask), ref_n_mpjpe(pred, target, mask)]
    expected += [ref_p_mpjpe(pred, target, mask)]
    np.testing.assert_allclose(means[:3], [e.mean() for e in expected], rtol=0, atol=ATOL)
    np.testing.assert_allclose(means[3], ref_pck(pred, target, [0.1], mask).mean(), atol=1e-4)
    np.testing.assert_allclose(
        means[4], ref_pck(pred, target, np.arange(31) * 0.005, mask).mean(), atol=1e-4
    )
    np.testing.assert_allclose(velocity, metrics.mpjve(pred, target, mask), atol=ATOL)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
        metrics.mpjpe(np.zeros((17, 3)), np.zeros((16, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
        metrics.p_mpjpe(np.zeros((17, 2)), np.zeros((17, 2)))


def _sequences():
    return {
        ("S9", "Walking 1", "54138969"): np.array([0.010, 0.020, 0.030]),
        ("S9", "Walking", "55011271"): np.array([0.040]),
        ("S11", "Walking", "54138969"): np.array([0.050, 0.060]),
        ("S9", "Eating", "54138969"): np.array([0.100, 0.200]),
        ("S11", "Eating 2", "60457274"): np.array([0.300]),
    }


def test_protocol_table_hand_computed():
    table = metrics.protocol_table(_sequences(), per_subject=True)
    # Walking pools 6 frames: 210 mm / 6 = 35 (per-sequence averaging would give 38.3).
    assert list(table.actions) == ["Eating", "Walking"]
    assert table.actions["Walking"] == pytest.approx(35.0)
    assert table.actions["Eating"] == pytest.approx(200.0)
    assert table.frames == {"Eating": 3, "Walking": 6}
    assert table.mean == pytest.approx(117.5)
    assert list(table.subjects) == ["S11", "S9"]
    assert table.subjects["S9"].actions == pytest.approx({"Walking": 25.0, "Eating": 150.0})
    assert table.subjects["S9"].mean == pytest.approx(87.5)
    assert table.subjects["S11"].actions == pytest.approx({"Walking": 55.0, "Eating": 300.0})
    assert table.subjects["S11"].mean == pytest.approx(177.5)
    assert json.loads(json.dumps(table.as_dict()))["subjects"]["S9"]["mean"] == pytest.approx(87.5)
    assert metrics.protocol_table(_sequences()).subjects == {}


def test_protocol_table_scale_and_order():
    pck = {("S9", name, "c"): np.array([50.0, 100.0]) for name in ("WalkTogether", "WalkDog 1")}
    pck[("S9", "Walking", "c")] = np.array([25.0])
    table = metrics.protocol_table(pck, scale=1.0)
    assert list(table.actions) == ["WalkDog", "Walking", "WalkTogether"]
    assert table.mean == pytest.approx((75.0 + 25.0 + 75.0) / 3)
    assert metrics.action_name("Sitting Down 2") == "Sitting"  # text before the first space


def test_format_markdown():
    tables = {
        "MPJPE": metrics.protocol_table(_sequences(), per_subject=True),
        "P-MPJPE": metrics.protocol_table({("S9", "Eating", "c"): np.array([0.01234])}),
    }
    lines = metrics.format_markdown(tables, digits=2).splitlines()
    assert lines[0] == "| Metric | Eating | Walking | Avg |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == "| MPJPE | 200.00 | 35.00 | 117.50 |"
    assert lines[3] == "| MPJPE (S11) | 300.00 | 55.00 | 177.50 |"
    assert lines[4] == "| MPJPE (S9) | 150.00 | 25.00 | 87.50 |"
    assert lines[5] == "| P-MPJPE | 12.34 | - | 12.34 |"


@pytest.mark.parametrize(
    "errors, match",
    [
        ({}, "at least one"),
        ({("S9", "Walking"): np.zeros(2)}, "subject, action, camera"),
        ({("S9", "Walking", "c"): np.zeros((2, 17))}, r"\(N,\)"),
        ({("S9", "Walking", "c"): np.array([0.1, np.nan])}, "non-finite"),
        ({("S9", "Walking", "c"): np.zeros(0)}, "no frames"),
    ],
)
def test_protocol_table_rejects_bad_input(errors, match):
    with pytest.raises(ValueError, match=match):
        metrics.protocol_table(errors)
