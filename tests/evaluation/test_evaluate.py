"""Evaluation: protocol numbers against an independent computation, flip test-time augmentation,
stitching (every frame counted once), table files, and the evaluate entrypoint."""

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from gentg_jax import evaluation
from gentg_jax.data import pipeline
from gentg_jax.train import loop
from tests import helpers

NUM_FRAMES = 9


@pytest.fixture(scope="module")
def test_sequences(tiny_data_dir):
    return pipeline.load_sequences("synthetic_h36m", tiny_data_dir, "test")


def _batches(sequences, batch_size=16):
    return pipeline.eval_batches(sequences, num_frames=NUM_FRAMES, batch_size=batch_size)


def _scaled(params, batch):
    """1.1 x the ground truth, sigma = |joint|: errors known in closed form."""
    pose = batch["pose_3d"]
    return {"joints_3d": 1.1 * pose, "log_sigma": jnp.log(jnp.linalg.norm(pose, axis=-1) + 1e-3)}


def _reference_tables(sequences):
    """P1 and MPJVE (mm) and 3DPCK (%) per action for `_scaled`, from the raw sequences."""
    per_action = {}
    for example in sequences:
        pose = np.asarray(example["pose_3d"], np.float64)
        pose = pose - pose[:, :1]
        error = 0.1 * np.linalg.norm(pose, axis=-1)  # (N, 17)
        velocity = 0.1 * np.linalg.norm(np.diff(pose, axis=0), axis=-1).mean(-1)
        rows = per_action.setdefault(
            example["action"].split(" ")[0], {"p1": [], "v": [], "pck": []}
        )
        rows["p1"].append(1000 * error.mean(-1))
        rows["v"].append(1000 * velocity)
        rows["pck"].append(100 * (error < 0.15).mean(-1))
    return {
        action: {name: np.concatenate(v).mean() for name, v in rows.items()}
        | {"frames": sum(len(v) for v in rows["p1"])}
        for action, rows in per_action.items()
    }


def test_protocol_numbers_match_independent_computation(test_sequences):
    result = evaluation.evaluate(_scaled, None, _batches(test_sequences))
    reference = _reference_tables(test_sequences)
    tables = result.tables
    assert set(tables["P1"].actions) == set(reference) == set(helpers.ACTIONS)
    for action, want in reference.items():
        np.testing.assert_allclose(tables["P1"].actions[action], want["p1"], rtol=1e-4)
        np.testing.assert_allclose(tables["MPJVE"].actions[action], want["v"], rtol=1e-4)
        np.testing.assert_allclose(tables["3DPCK"].actions[action], want["pck"], rtol=1e-4)
        # Stitching counts every frame of every sequence exactly once.
        assert tables["P1"].frames[action] == want["frames"]
    np.testing.assert_allclose(
        result.summary["p1"], np.mean([r["p1"] for r in reference.values()]), rtol=1e-4
    )
    assert result.summary["p2"] < 1e-2  # a scaled pose is exact after Procrustes (mm)
    assert result.summary["n_mpjpe"] < 1e-2
    assert result.summary["num_frames"] == sum(r["frames"] for r in reference.values())
    assert result.summary["sigma_error_corr"] > 0.99
    # The error is 0.1 x |joint| = 0.1 x sigma: the calibration slope is 0.1.
    assert result.summary["sigma_error_slope"] == pytest.approx(0.1, rel=0.02)


def test_evaluate_entrypoint_writes_tables(tiny_data_dir, compilation_cache, tmp_path):
    workdir = tmp_path / "run"
    config = helpers.tiny_config(tiny_data_dir, num_steps=2, eval_every=2)
    trained = loop.train_and_evaluate(config, str(workdir))
    result = subprocess.run(
        [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}", "--checkpoint=best"],
        env=helpers.subprocess_env(compilation_cache, 1),
        cwd=str(helpers.REPO),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "| P1 |" in result.stdout
    payload = json.loads((workdir / "eval" / "eval.json").read_text())
    assert payload["step"] == 2 and payload["flip"] is True
    assert set(payload["tables"]["P2"]["actions"]) == set(helpers.ACTIONS)
    # Same checkpoint, same data, same flip setting: the in-loop evaluation agrees.
    assert payload["summary"]["p1"] == pytest.approx(trained.eval_metrics["p1"], rel=1e-5)
    assert (workdir / "eval" / "eval.csv").is_file() and (workdir / "eval" / "eval.md").is_file()


def test_curves_match_independent_computation(test_sequences):
    result = evaluation.evaluate(_scaled, None, _batches(test_sequences))
    curves = result.curves
    assert sorted(curves) == ["calibration", "pck_curve", "per_joint"]
    # Per joint: 0.1 x |joint| (mm), frame-weighted within an action, then the mean over actions.
    per_action = {}
    for example in test_sequences:
        pose = np.asarray(example["pose_3d"], np.float64)
        error = 100.0 * np.linalg.norm(pose - pose[:, :1], axis=-1)  # (N, 17) mm
        per_action.setdefault(example["action"].split(" ")[0], []).append(error)
    want = np.mean([np.concatenate(e).mean(0) for e in per_action.values()], axis=0)
    np.testing.assert_allclose(curves["per_joint"]["tgt"], want, rtol=1e-4)
    assert list(curves["per_joint"]) == ["tgt"]  # not refining: one method
    # The PCK curve ends at the 3DPCK table (150 mm) and averages to the AUC.
    pck = curves["pck_curve"]
    assert pck["thresholds_mm"][0] == 0.0 and pck["thresholds_mm"][-1] == pytest.approx(150.0)
    assert pck["tgt"][-1] == pytest.approx(result.summary["pck3d"], abs=1e-3)
    assert np.mean(pck["tgt"]) == pytest.approx(result.summary["auc"], abs=1e-3)
    assert np.all(np.diff(pck["tgt"]) >= 0)
    # Calibration: sigma = |joint| + 1 mm, error = 0.1 |joint| -> error = 0.1 (sigma - 1 mm).
    bins = curves["calibration"]
    assert len(bins["sigma_mm"]) == 10 and sum(bins["count"]) == result.summary["num_frames"] * 16
    np.testing.assert_allclose(
        bins["error_mm"], 0.1 * (np.asarray(bins["sigma_mm"]) - 1.0), rtol=1e-3
    )
    assert result.summary["num_actions"] == 3 and result.mean_label == "Avg"


def test_partial_evaluation_labels_its_mean(tiny_data_dir, tmp_path):
    config = helpers.tiny_config(tiny_data_dir)
    config.eval.max_windows = 14  # two whole 60-frame sequences of 7 windows: 2 of 3 actions
    result = evaluation.evaluate_config(config, _scaled, None)
    assert result.summary["num_actions"] == 2 and result.split_actions == 3
    assert result.mean_label == "Avg (2 of 3 actions)"
    written = evaluation.write_tables(result, str(tmp_path))
    assert "| Avg (2 of 3 actions) |" in written["markdown"].splitlines()[0]
    assert (tmp_path / "eval.csv").read_text().splitlines()[0].endswith("Avg (2 of 3 actions)")
    payload = json.loads((tmp_path / "eval.json").read_text())
    assert payload["summary"]["num_actions"] == 2 and payload["actions_in_split"] == 3
    assert payload["curves"]["per_joint"]["tgt"][0] == 0.0  # the root is exact
