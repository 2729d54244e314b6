"""Inference: restore, sliding windows, bad input, GPC/e2e workdirs, the infer CLI.

A tiny TGT checkpoint (random parameters, EMA made different from the raw ones) is saved once
through checkpoint.CheckpointManager in the TrainState layout the training loop writes; the
training loop itself takes about a minute on this shared CPU, too long for this file's budget.
"""

import functools
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from configs import gpc_base, tgt_base
from gentg_jax import camera, checkpoint, diffusion, evaluation, inference, skeleton
from gentg_jax.data import pipeline
from gentg_jax.models import gpc, tgt
from gentg_jax.train import state as state_lib
from gentg_jax.train import tasks

ROOT = pathlib.Path(__file__).resolve().parents[1]
T = 16
SIZE = (1000.0, 1002.0)


def _tgt_config() -> ml_collections.ConfigDict:
    config = tgt_base.get_config("tiny")
    config.data.num_frames = T
    config.model.update(dim=32, max_frames=T)
    return config


def _save(workdir: pathlib.Path, config, params, ema_scale: float = 0.9) -> None:
    """Saves a step-1 checkpoint whose EMA parameters differ from the raw ones."""
    tx = state_lib.make_optimizer(tgt_base.get_config("tiny").train)
    state = state_lib.create_train_state(params, tx, jax.random.PRNGKey(0))
    state = state.replace(ema_params=jax.tree.map(lambda p: p * ema_scale, params))
    manager = checkpoint.CheckpointManager(checkpoint.checkpoint_directory(workdir))
    manager.save(1, jax.tree.map(np.asarray, state.to_checkpoint()), config=config)
    manager.wait()
    manager.close()
    checkpoint.save_config(workdir, config)


def _random_params(init, *inputs, seed: int):
    """Parameters shaped as `init` makes them, with seeded random values (no init compile)."""
    shapes = jax.eval_shape(init, jax.random.PRNGKey(0), *inputs)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(np.float32), shapes)


def _tgt_params(config, seed=1):
    model = tgt.TemporalGraphLimbTransformer.from_config(config.model)
    return _random_params(model.init, np.zeros((1, T, 17, 2), np.float32), seed=seed)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("inference")


@pytest.fixture(scope="module")
def raw_params():
    return _tgt_params(_tgt_config())


@pytest.fixture(scope="module")
def tgt_workdir(root, raw_params):
    _save(root / "tgt", _tgt_config(), raw_params)
    return root / "tgt"


@pytest.fixture(scope="module")
def predictor(tgt_workdir):
    return inference.load_predictor(tgt_workdir)


def _sequence(length, batch=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (length, 17) if batch is None else (batch, length, 17)
    keypoints = rng.uniform([300, 200], [700, 800], shape + (2,)).astype(np.float32)
    return keypoints, rng.uniform(0.2, 1.0, shape).astype(np.float32)


def _reference(predictor, keypoints, scores, flip=True):
    """Independent per-window coarse prediction: model.apply on normalised pixels (B, T, ...)."""
    apply = jax.jit(tgt.TemporalGraphLimbTransformer.from_config(predictor.config.model).apply)
    variables = {"params": predictor.params["tgt"]}
    x = camera.normalize_screen_coordinates(keypoints, *SIZE)
    out, _ = apply(variables, x, scores)
    joints, log_sigma = out["joints_3d"], out["log_sigma"]
    if flip:
        perm = list(skeleton.FLIP_PERMUTATION)
        mirrored, _ = apply(variables, x[..., perm, :] * np.array([-1, 1]), scores[..., perm])
        joints = 0.5 * (joints + mirrored["joints_3d"][..., perm, :] * np.array([-1, 1, 1]))
        log_sigma = 0.5 * (log_sigma + mirrored["log_sigma"][..., perm])
    return np.asarray(joints), np.exp(np.asarray(log_sigma))


def test_import_is_lazy():
    code = "import sys, gentg_jax; assert 'jax' not in sys.modules; print(gentg_jax.load_predictor)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "function load_predictor" in result.stdout


def test_restores_ema_params_and_config(predictor, tgt_workdir, raw_params):
    assert predictor.num_frames == T and predictor.flip and not predictor.has_refiner
    leaves = zip(jax.tree.leaves(predictor.params["tgt"]), jax.tree.leaves(raw_params), strict=True)
    for got, want in leaves:
        np.testing.assert_allclose(got, 0.9 * want, rtol=1e-6)
    assert inference.load_predictor(tgt_workdir / "checkpoints" / "1").num_frames == T


def test_matches_the_evaluation_path(predictor):
    length = 2 * T + 5  # windows [0, T), [T, 2T), [T + 5, 2T + 5) in both paths
    keypoints, scores = _sequence(length)
    example = {
        "subject": "S9", "action": "Walking", "camera": "54138969",
        "keypoints_2d": keypoints, "scores": scores, "image_size": np.asarray(SIZE),
        "pose_3d": np.zeros((length, 17, 3), np.float32),
        "intrinsics": camera.camera("S9", 0).intrinsic,
    }  # fmt: skip
    task = tasks.get_task(predictor.config)
    step = jax.jit(functools.partial(evaluation.eval_outputs, predict=task.predict, flip=True))
    (batch,) = pipeline.eval_batches([example], num_frames=T, batch_size=4, process_count=1)
    want = jax.device_get(
        step(predictor.params["tgt"], {k: batch[k] for k in evaluation.DEVICE_KEYS})
    )
    got = predictor.predict_windows(batch["keypoints_2d"], batch["scores"])
    np.testing.assert_allclose(got["coarse_3d"], want["joints_3d"], atol=1e-5)
    np.testing.assert_allclose(got["uncertainty"], want["sigma"], rtol=1e-5)
    # The whole sequence with stride T: frames seen by one window only equal evaluation's.
    out = predictor.predict(keypoints, scores, SIZE, stride=T)
    single = np.r_[0 : T + 5, 2 * T : length]
    mask = batch["frame_mask"][:3] > 0
    stitched = np.zeros((length, 17, 3), np.float32)
    stitched[batch["frame_index"][:3][mask]] = want["joints_3d"][:3][mask]
    np.testing.assert_allclose(out["coarse_3d"][single], stitched[single], atol=1e-5)


def test_compiles_once_per_window_batch_shape(predictor):
    keypoints, scores = _sequence(40)
    predictor.predict(keypoints, scores, SIZE)
    count = predictor.trace_count
    predictor.predict(keypoints + 3.0, scores, SIZE)  # same shape, new values
    predictor.predict(_sequence(38)[0], None, SIZE)  # 4 windows like 40 frames
    assert predictor.trace_count == count


def test_long_sequence_blends_overlapping_windows(predictor):
    length = 3 * T + 5  # stride T // 2 = 8: starts 0, 8, ..., 32, 37
    keypoints, scores = _sequence(length, seed=1)
    out = predictor.predict(keypoints, scores, SIZE)
    starts = [0, 8, 16, 24, 32, 37]
    joints, sigma = _reference(predictor, np.stack([keypoints[s : s + T] for s in starts]),
                               np.stack([scores[s : s + T] for s in starts]))  # fmt: skip
    weights = np.sin(np.pi * (np.arange(T) + 1) / (T + 1)) ** 2
    total, norm = np.zeros((length, 17, 3)), np.zeros(length)
    for index, start in enumerate(starts):
        total[start : start + T] += weights[:, None, None] * joints[index]
        norm[start : start + T] += weights
    np.testing.assert_allclose(out["coarse_3d"], total / norm[:, None, None], atol=1e-5)
    assert out["uncertainty"].shape == (length, 17) and np.all(out["uncertainty"] > 0)
    np.testing.assert_allclose(out["uncertainty"][:8], sigma[0, :8], rtol=1e-5)
    assert np.all(out["coarse_3d"][:, skeleton.ROOT] == 0)


def test_short_sequence_is_edge_padded(predictor):
    keypoints, scores = _sequence(5, seed=2)
    out = predictor.predict(keypoints, scores, SIZE)
    padded = np.concatenate([np.arange(5), np.full(T - 5, 4)])
    joints, sigma = _reference(predictor, keypoints[padded][None], scores[padded][None])
    np.testing.assert_allclose(out["coarse_3d"], joints[0, :5], atol=1e-5)
    np.testing.assert_allclose(out["uncertainty"], sigma[0, :5], rtol=1e-5)


def test_batch_equals_single_sequences(predictor):
    keypoints, scores = _sequence(23, batch=3, seed=3)
    batched = predictor.predict(keypoints, scores, SIZE)
    for b in range(3):
        single = predictor.predict(keypoints[b], scores[b], SIZE)
        for key in ("coarse_3d", "uncertainty"):
            np.testing.assert_allclose(batched[key][b], single[key], rtol=1e-5, atol=1e-6)


def test_coco_layout_is_converted(predictor):
    keypoints, scores = _sequence(20, seed=4)
    out = predictor.predict(keypoints, scores, SIZE, layout="coco")
    converted = skeleton.coco_to_h36m(keypoints, scores)
    want = predictor.predict(*converted, SIZE, layout="h36m")
    np.testing.assert_allclose(out["coarse_3d"], want["coarse_3d"], atol=1e-6)


def test_nan_joints_are_missing_with_scores(predictor):
    keypoints, scores = _sequence(20, seed=5)
    keypoints[3, 7] = np.nan
    out = predictor.predict(keypoints, scores, SIZE)
    filled, filled_scores = keypoints.copy(), scores.copy()
    filled[3, 7] = np.delete(keypoints[3], 7, axis=0).mean(0)
    filled_scores[3, 7] = 0.0
    want = predictor.predict(filled, filled_scores, SIZE)
    np.testing.assert_allclose(out["coarse_3d"], want["coarse_3d"], atol=1e-6)
    with pytest.raises(ValueError, match="non-finite joints .* pass scores"):
        predictor.predict(keypoints, None, SIZE)


def test_coordinates_outside_the_image_are_allowed(predictor):
    keypoints, _ = _sequence(10, seed=6)
    out = predictor.predict(keypoints * 3.0 - 1500.0, None, SIZE)
    assert np.all(np.isfinite(out["coarse_3d"]))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(keypoints_2d=np.zeros((10, 18, 2))), "needs 17 joints"),
        (dict(keypoints_2d=np.zeros((17, 2))), r"is not \(T, 17, 2\)"),
        (dict(keypoints_2d=np.zeros((10, 17, 3))), r"\(x, y\)"),
        (dict(keypoints_2d=np.zeros((0, 17, 2))), "empty"),
        (dict(scores=np.ones((10, 16))), "scores shape"),
        (dict(scores=np.full((10, 17), np.nan)), "scores contain NaN"),
        (dict(image_size=None), "image_size=.* required"),
        (dict(image_size=(0, 100)), "image_size must be"),
        (dict(layout="openpose"), "layout="),
        (dict(camera=np.ones(4)), "camera must be"),
        (dict(keypoints_2d=[["a"]]), "numeric"),
    ],
)
def test_bad_input_is_a_clear_error(predictor, change, match):
    args = {"keypoints_2d": np.zeros((10, 17, 2)), "scores": None, "image_size": SIZE, **change}
    with pytest.raises(ValueError, match=match):
        predictor.predict(**args)


def test_refine_on_a_tgt_checkpoint_raises(predictor):
    with pytest.raises(ValueError, match="refine=True needs a GPC"):
        predictor.predict(np.zeros((10, 17, 2)), image_size=SIZE, refine=True)


def test_missing_partial_and_corrupt_checkpoints(tmp_path, tgt_workdir, raw_params):
    with pytest.raises(FileNotFoundError, match="no workdir or checkpoint"):
        inference.load_predictor(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        inference.load_predictor(tmp_path)
    partial, corrupt = tmp_path / "partial", tmp_path / "corrupt"
    for copy in (partial, corrupt):
        shutil.copytree(tgt_workdir, copy)
    shutil.rmtree(partial / "checkpoints" / "1" / "state")  # only config and data were written
    for data_file in (corrupt / "checkpoints" / "1" / "state").rglob("d/*"):
        data_file.write_bytes(b"garbage")
    for broken in (partial, corrupt):
        with pytest.raises(checkpoint.CheckpointError, match="partial or corrupt"):
            inference.load_predictor(broken)
    mismatched = _tgt_config()
    mismatched.model.dim = 16  # the saved params have dim 32
    _save(tmp_path / "mismatch", mismatched, raw_params)
    with pytest.raises(checkpoint.CheckpointError, match="do not fit the model"):
        inference.load_predictor(tmp_path / "mismatch")


_EIGHT_DEVICE_SAVE = """
import json, sys
import jax, ml_collections, numpy as np
from flax import traverse_util
from gentg_jax import checkpoint
from gentg_jax.train import parallel, state as state_lib
assert jax.device_count() == 8
config = ml_collections.ConfigDict(json.loads(sys.argv[2]))
params = traverse_util.unflatten_dict(dict(np.load(sys.argv[1] + "/params.npz")), sep="/")
state = state_lib.create_train_state(params, state_lib.make_optimizer(config.train),
                                     jax.random.PRNGKey(0))
layout = parallel.DataParallel("pmap")
replicated = layout.replicate(state)
assert all(len(x.sharding.device_set) == 8 for x in jax.tree.leaves(replicated.ema_params))
manager = checkpoint.CheckpointManager(sys.argv[1] + "/checkpoints")
manager.save(3, layout.unreplicate(replicated.to_checkpoint()), config=config)
manager.wait()
"""


def test_restores_a_checkpoint_saved_by_an_eight_device_run(tmp_path, raw_params):
    np.savez(tmp_path / "params.npz", **traverse_util.flatten_dict(raw_params, sep="/"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    env["PYTHONPATH"] = str(ROOT)
    config = json.dumps(checkpoint.config_to_dict(_tgt_config()))
    command = [sys.executable, "-c", _EIGHT_DEVICE_SAVE, str(tmp_path), config]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    restored = inference.load_predictor(tmp_path)
    got, want = jax.tree.leaves(restored.params["tgt"]), jax.tree.leaves(raw_params)
    for leaf, expected in zip(got, want, strict=True):
        assert leaf.devices() == {jax.devices()[0]}
        np.testing.assert_array_equal(leaf, expected)


def _gpc_config(tgt_workdir: str) -> ml_collections.ConfigDict:
    config = gpc_base.get_config("tiny")
    config.tgt_workdir = tgt_workdir
    config.train_from_gt_noise = False
    config.model.update(max_frames=T)
    config.refine.update(selection="top_fraction", num_hypotheses=2, num_steps=2)
    return config


def _gpc_params(config):
    model = gpc.PoseDenoiser.from_config(config.model)
    zeros = np.zeros((1, T, 17, 3), np.float32)
    return _random_params(model.init, zeros, 0, zeros[..., :2], zeros, zeros[..., 0], seed=2)


def test_gpc_and_e2e_workdirs_refine(root, tgt_workdir, predictor):
    # The saved tgt_workdir no longer exists; a TGT workdir of that name beside the GPC's does.
    gpc_config = _gpc_config("/moved/away/tgt")
    gpc_params = _gpc_params(gpc_config)
    _save(root / "gpc", gpc_config, gpc_params, ema_scale=1.0)
    refiner = inference.load_predictor(root / "gpc")
    assert refiner.has_refiner
    keypoints, scores = _sequence(T, seed=7)  # one window: start 0, weights cancel
    out = refiner.predict(keypoints, scores, SIZE, seed=3)
    coarse = predictor.predict(keypoints, scores, SIZE)
    np.testing.assert_allclose(out["coarse_3d"], coarse["coarse_3d"], atol=1e-6)
    # Independently: diffusion.refine on the window with key fold_in(PRNGKey(seed), start).
    model = gpc.PoseDenoiser.from_config(gpc_config.model)
    schedule = diffusion.make_schedule(gpc_config.diffusion)

    @jax.jit
    def refine(coarse, log_sigma, x, intrinsics):
        denoise = gpc.make_denoise_fn(model, gpc_params, x, coarse, log_sigma)
        key = jax.random.fold_in(jax.random.PRNGKey(3), 0)
        args = (denoise, schedule, coarse, log_sigma, x, intrinsics, key)
        return diffusion.refine(*args, config=gpc_config.refine)["refined_3d"]

    x = camera.normalize_screen_coordinates(keypoints, *SIZE)[None]
    intrinsics = inference.generic_intrinsics(SIZE)[None]
    want = refine(out["coarse_3d"][None], np.log(out["uncertainty"])[None], x, intrinsics)
    np.testing.assert_allclose(out["refined_3d"], want[0], atol=1e-5)

    # e2e: both parameter sets in one checkpoint, both saved configs embedded in its config.
    e2e = ml_collections.ConfigDict({"task": "e2e", "tgt": _tgt_config(), "gpc": gpc_config})
    _save(root / "e2e", e2e, refiner.params, ema_scale=1.0)
    both = inference.load_predictor(root / "e2e")
    assert both.has_refiner and both.num_frames == T
    for got, want in zip(
        jax.tree.leaves(both.params), jax.tree.leaves(refiner.params), strict=True
    ):
        np.testing.assert_array_equal(got, want)

    gpc_config.tgt_workdir = ""
    _save(root / "gpc_from_gt", gpc_config, gpc_params)
    with pytest.raises(ValueError, match="no tgt_workdir"):
        inference.load_predictor(root / "gpc_from_gt")
    assert inference.load_predictor(root / "gpc_from_gt", tgt_path=tgt_workdir).has_refiner


def _run_cli(*args):
    command = [sys.executable, "-m", "experiments.infer", "--config", "configs/infer_offline.py"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True)


def test_infer_cli_reads_both_formats(tmp_path, tgt_workdir, predictor):
    keypoints, scores = _sequence(30, seed=8)
    simple = tmp_path / "seq.npz"
    np.savez(simple, keypoints=keypoints, scores=scores, image_size=np.asarray(SIZE))
    output = tmp_path / "out" / "result.npz"
    result = _run_cli(
        f"--config.checkpoint={tgt_workdir}", f"--input={simple}", f"--output={output}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(output) as written:
        assert sorted(written.files) == sorted(
            ["keypoints_2d", "scores", "image_size", "coarse_3d", "uncertainty"]
        )
        want = predictor.predict(keypoints, scores, SIZE)
        np.testing.assert_allclose(written["coarse_3d"], want["coarse_3d"], atol=1e-5)
        np.testing.assert_array_equal(written["keypoints_2d"], keypoints)

    custom = tmp_path / "data_2d_custom_test.npz"
    metadata = {"layout_name": "coco", "video_metadata": {"clip": {"w": 1000, "h": 1002}}}
    np.savez(custom, positions_2d={"clip": {"custom": [keypoints]}}, metadata=metadata)
    output = tmp_path / "custom.npz"
    result = _run_cli(
        f"--config.checkpoint={tgt_workdir}", f"--input={custom}", f"--output={output}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(output) as written:
        want = predictor.predict(keypoints, None, SIZE, layout="coco")
        np.testing.assert_allclose(written["coarse_3d"], want["coarse_3d"], atol=1e-5)
        np.testing.assert_allclose(written["keypoints_2d"], skeleton.coco_to_h36m(keypoints))
        np.testing.assert_array_equal(written["image_size"], SIZE)
