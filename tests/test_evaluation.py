"""Evaluation: protocol numbers against an independent computation, flip test-time augmentation,
stitching (every frame counted once), table files, and the evaluate entrypoint."""

import csv
import json
import subprocess
import sys

import _fixtures
import jax.numpy as jnp
import numpy as np
import pytest

from gentg_jax import evaluation, skeleton
from gentg_jax.data import pipeline
from gentg_jax.train import loop

NUM_FRAMES = 9


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    _fixtures.enable_compilation_cache(tmp_path_factory.getbasetemp())
    return _fixtures.build_tiny_dataset(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def test_sequences(data_dir):
    return pipeline.load_sequences("synthetic_h36m", data_dir, "test")


def _batches(sequences, batch_size=16):
    return pipeline.eval_batches(sequences, num_frames=NUM_FRAMES, batch_size=batch_size)


def _scaled(params, batch):
    """1.1 x the ground truth, sigma = |joint|: flip-equivariant, errors known in closed form."""
    pose = batch["pose_3d"]
    return {"joints_3d": 1.1 * pose, "log_sigma": jnp.log(jnp.linalg.norm(pose, axis=-1) + 1e-3)}


def _shifted(params, batch):
    """Ground truth shifted 3 cm along +x (root kept at 0): not flip-equivariant."""
    shift = jnp.asarray([0.03, 0.0, 0.0]) * (jnp.arange(skeleton.NUM_JOINTS) > 0)[:, None]
    return {"joints_3d": batch["pose_3d"] + shift}


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


@pytest.mark.parametrize("flip", [False, True])
def test_protocol_numbers_match_independent_computation(test_sequences, flip):
    result = evaluation.evaluate(_scaled, None, _batches(test_sequences), flip=flip)
    reference = _reference_tables(test_sequences)
    tables = result.tables
    assert set(tables["P1"].actions) == set(reference) == set(_fixtures.ACTIONS)
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


def test_flip_augmentation_mirrors_predictions_back(test_sequences):
    plain = evaluation.evaluate(_shifted, None, _batches(test_sequences), flip=False)
    flipped = evaluation.evaluate(_shifted, None, _batches(test_sequences), flip=True)
    # 16 of 17 joints are 30 mm off; the mirrored prediction is off by -30 mm and cancels it.
    np.testing.assert_allclose(plain.summary["p1"], 30.0 * 16 / 17, rtol=1e-4)
    assert flipped.summary["p1"] < 1e-3
    assert "sigma_error_corr" not in plain.summary


def test_select_sequences_caps_windows_and_covers_actions(test_sequences):
    chosen = evaluation.select_sequences(test_sequences, NUM_FRAMES, max_windows=30)
    windows = sum(
        len(pipeline.eval_windows([len(e["keypoints_2d"])], NUM_FRAMES)[0]) for e in chosen
    )
    assert 0 < windows <= 30
    assert {e["action"].split(" ")[0] for e in chosen} == set(_fixtures.ACTIONS)
    assert evaluation.select_sequences(test_sequences, NUM_FRAMES, 0) == list(test_sequences)


def test_write_tables(test_sequences, tmp_path):
    result = evaluation.evaluate(_scaled, None, _batches(test_sequences), flip=False)
    written = evaluation.write_tables(result, str(tmp_path), name="eval", info={"step": 7})
    payload = json.loads((tmp_path / "eval.json").read_text())
    assert payload["step"] == 7
    assert payload["tables"]["P1"]["actions"] == pytest.approx(result.tables["P1"].actions)
    with open(tmp_path / "eval.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["metric", *sorted(_fixtures.ACTIONS, key=str.lower), "Avg"]
    assert [r[0] for r in rows[1:]] == list(result.tables)
    assert float(rows[1][-1]) == pytest.approx(result.summary["p1"], abs=1e-3)
    markdown = (tmp_path / "eval.md").read_text()
    assert markdown == written["markdown"] and "| P1 |" in markdown and "| P2 |" in markdown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.csv", "eval.json", "eval.md"]


def test_evaluate_entrypoint_writes_tables(data_dir, tmp_path, tmp_path_factory):
    workdir = tmp_path / "run"
    config = _fixtures.tiny_config(data_dir, num_steps=2, eval_every=2)
    trained = loop.train_and_evaluate(config, str(workdir))
    cache_dir = str(tmp_path_factory.getbasetemp() / "jax_cache")
    result = subprocess.run(
        [sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}", "--checkpoint=best"],
        env=_fixtures.subprocess_env(cache_dir, 1),
        cwd=str(_fixtures.REPO),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "| P1 |" in result.stdout
    payload = json.loads((workdir / "eval" / "eval.json").read_text())
    assert payload["step"] == 2 and payload["flip"] is True
    assert set(payload["tables"]["P2"]["actions"]) == set(_fixtures.ACTIONS)
    # Same checkpoint, same data, same flip setting: the in-loop evaluation agrees.
    assert payload["summary"]["p1"] == pytest.approx(trained.eval_metrics["p1"], rel=1e-5)
    assert (workdir / "eval" / "eval.csv").is_file() and (workdir / "eval" / "eval.md").is_file()
