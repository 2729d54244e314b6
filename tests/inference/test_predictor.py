"""The Predictor: restore, agreement with evaluation, compilation, GPC/e2e workdirs, checkpoints.
(The tiny TGT workdir: tests/inference/common.py.)
"""

import functools
import json
import os
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from configs import gpc_base
from gentg_jax import camera, checkpoint, diffusion, evaluation, inference
from gentg_jax.data import h36m, pipeline
from gentg_jax.models import gpc
from gentg_jax.train import registry
from tests import helpers
from tests.inference import common

ROOT = helpers.REPO


def test_import_is_lazy():
    code = "import sys, gentg_jax; assert 'jax' not in sys.modules; print(gentg_jax.load_predictor)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=helpers.REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "function load_predictor" in result.stdout


def test_restores_ema_params_and_config(predictor, tgt_workdir, raw_params):
    assert predictor.num_frames == common.T and predictor.flip and not predictor.has_refiner
    leaves = zip(jax.tree.leaves(predictor.params["tgt"]), jax.tree.leaves(raw_params), strict=True)
    for got, want in leaves:
        np.testing.assert_allclose(got, 0.9 * want, rtol=1e-6)
    assert inference.load_predictor(tgt_workdir / "checkpoints" / "1").num_frames == common.T


def test_matches_the_evaluation_path(predictor):
    length = 2 * common.T + 5  # windows [0, T), [T, 2T), [T + 5, 2T + 5) in both paths
    keypoints, scores = common.sequence(length)
    example = {
        "subject": "S9", "action": "Walking", "camera": "54138969",
        "keypoints_2d": keypoints, "scores": scores, "image_size": np.asarray(common.SIZE),
        "pose_3d": np.zeros((length, 17, 3), np.float32),
        "intrinsics": h36m.camera("S9", 0).intrinsic,
    }  # fmt: skip
    task = registry.get_task(predictor.config)
    step = jax.jit(functools.partial(evaluation.eval_outputs, predict=task.predict))
    (batch,) = pipeline.eval_batches([example], num_frames=common.T, batch_size=4, process_count=1)
    want = jax.device_get(
        step(predictor.params["tgt"], {k: batch[k] for k in pipeline.DEVICE_KEYS})
    )
    got = predictor.predict_windows(batch["keypoints_2d"], batch["scores"])
    np.testing.assert_allclose(got["coarse_3d"], want["joints_3d"], atol=1e-5)
    np.testing.assert_allclose(got["uncertainty"], want["sigma"], rtol=1e-5)
    # The whole sequence with stride T: frames seen by one window only equal evaluation's.
    out = predictor.predict(keypoints, scores, common.SIZE, stride=common.T)
    single = np.r_[0 : common.T + 5, 2 * common.T : length]
    mask = batch["frame_mask"][:3] > 0
    stitched = np.zeros((length, 17, 3), np.float32)
    stitched[batch["frame_index"][:3][mask]] = want["joints_3d"][:3][mask]
    np.testing.assert_allclose(out["coarse_3d"][single], stitched[single], atol=1e-5)


def test_compiles_once_per_window_batch_shape(predictor):
    keypoints, scores = common.sequence(40)
    predictor.predict(keypoints, scores, common.SIZE)
    count = predictor.trace_count
    predictor.predict(keypoints + 3.0, scores, common.SIZE)  # same shape, new values
    predictor.predict(common.sequence(38)[0], None, common.SIZE)  # 4 windows like 40 frames
    assert predictor.trace_count == count


def test_refine_on_a_tgt_checkpoint_raises(predictor):
    with pytest.raises(ValueError, match="refine=True needs a GPC"):
        predictor.predict(np.zeros((10, 17, 2)), image_size=common.SIZE, refine=True)


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
    mismatched = common.tgt_config()
    mismatched.model.dim = 16  # the saved params have dim 32
    common.save_checkpoint(tmp_path / "mismatch", mismatched, raw_params)
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
    config = json.dumps(checkpoint.config_to_dict(common.tgt_config()))
    command = [sys.executable, "-c", _EIGHT_DEVICE_SAVE, str(tmp_path), config]
    result = subprocess.run(command, env=env, cwd=helpers.REPO, capture_output=True, text=True)
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
    config.model.update(max_frames=common.T)
    config.refine.update(selection="top_fraction", num_hypotheses=2, num_steps=2)
    return config


def _gpc_params(config):
    model = gpc.PoseDenoiser.from_config(config.model)
    zeros = np.zeros((1, common.T, 17, 3), np.float32)
    return common.random_params(model.init, zeros, 0, zeros[..., :2], zeros, zeros[..., 0], seed=2)


def test_gpc_and_e2e_workdirs_refine(root, tgt_workdir, predictor):
    # The saved tgt_workdir no longer exists; a TGT workdir of that name beside the GPC's does.
    gpc_config = _gpc_config("/moved/away/tgt")
    gpc_params = _gpc_params(gpc_config)
    common.save_checkpoint(root / "gpc", gpc_config, gpc_params, ema_scale=1.0)
    refiner = inference.load_predictor(root / "gpc")
    assert refiner.has_refiner
    keypoints, scores = common.sequence(common.T, seed=7)  # one window: start 0, weights cancel
    out = refiner.predict(keypoints, scores, common.SIZE, seed=3)
    coarse = predictor.predict(keypoints, scores, common.SIZE)
    np.testing.assert_allclose(out["coarse_3d"], coarse["coarse_3d"], atol=1e-6)
    # Independently: diffusion.refine on the window with key fold_in(PRNGKey(seed), start).
    model = gpc.PoseDenoiser.from_config(gpc_config.model)
    schedule = diffusion.make_schedule(gpc_config.diffusion)

    @jax.jit
    def refine(coarse, log_sigma, x, intrinsics):
        denoise = gpc.make_denoise_fn(model, gpc_params, x, coarse, log_sigma)
        key = jax.random.fold_in(jax.random.PRNGKey(3), 0)
        args = (denoise, schedule, coarse, log_sigma, x, intrinsics, key)
        return diffusion.refine(*args, config=gpc_config.refine)

    x = camera.normalize_screen_coordinates(keypoints, *common.SIZE)[None]
    intrinsics = inference.generic_intrinsics(common.SIZE)[None]
    want = refine(out["coarse_3d"][None], np.log(out["uncertainty"])[None], x, intrinsics)
    np.testing.assert_allclose(out["refined_3d"], want["refined_3d"][0], atol=1e-5)
    # Which joints were resampled (one window: 0 or 1); the kept ones are the coarse joints.
    np.testing.assert_array_equal(out["resampled"], want["resample_mask"][0].astype(np.float32))
    kept = out["resampled"] == 0
    np.testing.assert_allclose(out["refined_3d"][kept], out["coarse_3d"][kept], atol=1e-7)

    # e2e: both parameter sets in one checkpoint, both saved configs embedded in its config.
    e2e = ml_collections.ConfigDict({"task": "e2e", "tgt": common.tgt_config(), "gpc": gpc_config})
    common.save_checkpoint(root / "e2e", e2e, refiner.params, ema_scale=1.0)
    both = inference.load_predictor(root / "e2e")
    assert both.has_refiner and both.num_frames == common.T
    for got, want in zip(
        jax.tree.leaves(both.params), jax.tree.leaves(refiner.params), strict=True
    ):
        np.testing.assert_array_equal(got, want)

    gpc_config.tgt_workdir = ""
    common.save_checkpoint(root / "gpc_from_gt", gpc_config, gpc_params)
    with pytest.raises(ValueError, match="trained without a TGT"):
        inference.load_predictor(root / "gpc_from_gt")
    assert inference.load_predictor(root / "gpc_from_gt", tgt_path=tgt_workdir).has_refiner


def test_gpc_paired_with_another_tgt_is_refused(root, tgt_workdir, caplog):
    # The GPC records the TGT it was trained on; beside it now lies another TGT named `tgt`.
    gpc_config = _gpc_config("/moved/away/tgt")
    recorded = checkpoint.tgt_provenance("/moved/away/tgt", checkpoint.load_params(tgt_workdir))
    gpc_config.tgt_provenance = recorded
    gpc_params = _gpc_params(gpc_config)
    pair = root / "wrong_pair"
    common.save_checkpoint(pair / "gpc", gpc_config, gpc_params)
    other_params = common.tgt_params(common.tgt_config(), seed=5)
    common.save_checkpoint(pair / "tgt", common.tgt_config(), other_params)
    with pytest.raises(checkpoint.TGTMismatchError) as error:
        inference.load_predictor(pair / "gpc")
    message = str(error.value)
    assert f"the GPC at {pair / 'gpc'} was trained on the TGT at /moved/away/tgt step 1" in message
    assert recorded["fingerprint"][:16] in message and f"{pair / 'tgt'} step 1" in message
    assert "allow_tgt_mismatch" in message
    # The right TGT, named explicitly, is accepted (checked by its parameters, not its path).
    right = inference.load_predictor(pair / "gpc", tgt_path=tgt_workdir)
    np.testing.assert_array_equal(
        jax.tree.leaves(right.params["tgt"])[0],
        jax.tree.leaves(checkpoint.load_params(tgt_workdir).params)[0],
    )
    # The override accepts the other one, with a warning.
    with caplog.at_level("WARNING"):
        other = inference.load_predictor(pair / "gpc", allow_tgt_mismatch=True)
    assert "using it anyway (allow_tgt_mismatch)" in caplog.text
    np.testing.assert_array_equal(
        jax.tree.leaves(other.params["tgt"])[0], 0.9 * jax.tree.leaves(other_params)[0]
    )
    # A GPC saved before provenance existed loads with a warning that it cannot be checked.
    del gpc_config["tgt_provenance"]
    gpc_config.tgt_workdir = str(tgt_workdir)
    common.save_checkpoint(root / "legacy_gpc", gpc_config, gpc_params)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert inference.load_predictor(root / "legacy_gpc").has_refiner
    assert "trained before TGT provenance was recorded" in caplog.text
