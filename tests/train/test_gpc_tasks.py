"""GPC and e2e training (gentg_jax.train.gpc_tasks) and the refinement evaluation: training from
GT noise, a frozen TGT that stays out of the optimiser, single vs pmap steps, exact e2e resume,
and the refinement tables of a GPC workdir.

The frozen TGT is a checkpoint of random parameters saved through the checkpoint manager (the
TrainState layout the loop writes); training one would take most of this file's time budget.
"""

import functools
import json
import pathlib
import shutil
import textwrap

import jax
import ml_collections
import numpy as np
import pytest

from configs import e2e_finetune, gpc_base
from gentg_jax import checkpoint, inference
from gentg_jax.data import pipeline
from gentg_jax.train import gpc_tasks, loop, registry, steps, tasks
from tests import helpers

# One process, 8 CPU devices: a GPC step (frozen TGT captured) in each layout on one global
# batch. pmap folds the device index into each device's key, so the reference for pmap is the
# same step vmapped over the 8 batch shards on one device with the same axis name (identical
# keys and gradient averaging); sharded jit draws from the global key like the single step.
# Two steps: the zero-initialised head lets only itself move in the first.
_LAYOUTS_SCRIPT = textwrap.dedent(
    """
    import functools, json, sys
    import jax, ml_collections, numpy as np, optax
    from gentg_jax.data import pipeline
    from gentg_jax.train import loop, parallel, registry, steps

    config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
    task = registry.get_task(config)
    # Plain SGD: Adam would turn float noise in exactly-zero gradients (e.g. of the head bias,
    # which the root subtraction cancels) into full-size steps of either sign.
    task.optimizer = lambda: optax.sgd(0.1)
    sequences = pipeline.load_sequences(config.data.name, config.data.data_dir, "train")
    dataset = pipeline.train_dataset(
        sequences, num_frames=9, batch_size=16, seed=0, process_index=0, process_count=1
    )
    batch = pipeline.device_batch(dataset[0])
    batch["frame_mask"] = np.ones_like(batch["frame_mask"])  # equal counted frames per device
    initial = loop.init_state(config, task, dataset[0])
    step_fn = functools.partial(steps.train_step, task=task, config=config)
    params = {}
    for mode in ("single", "pmap", "sharded"):
        layout = parallel.DataParallel(mode)
        step, state = layout.compile_step(step_fn), layout.replicate(initial)
        for _ in range(2):
            state, _ = step(state, layout.shard_batch(batch))
        params[mode] = layout.unreplicate(state.params)

    def emulated_steps(shard):
        state = initial
        for _ in range(2):
            state, _ = step_fn(state, shard, axis_name="data")
        return state.params

    shards = jax.tree.map(lambda x: x.reshape(8, 2, *x.shape[1:]), batch)
    emulated = jax.jit(jax.vmap(emulated_steps, axis_name="data"))(shards)
    params["emulated"] = jax.tree.map(lambda x: np.asarray(x[0]), emulated)

    def diff(a, b):
        return max(
            float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
        )

    print("RESULT", json.dumps({
        "pmap": diff(params["pmap"], params["emulated"]),
        "sharded": diff(params["sharded"], params["single"]),
        "pmap_vs_single": diff(params["pmap"], params["single"]),
        "moved": diff(initial.params, params["single"]),
    }))
    """
)


# Tiny programs run in milliseconds either way; LLVM optimisation would double compile time.
_FAST = {"xla_backend_optimization_level": 0}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def tgt_workdir(base, tiny_data_dir):
    """A tiny TGT workdir with one checkpoint of (seeded) freshly initialised parameters."""
    workdir = base / "gpc_train_tgt"
    config = helpers.tiny_config(tiny_data_dir)
    task = registry.get_task(config)
    sequences = pipeline.load_sequences(config.data.name, tiny_data_dir, "train")
    sample = pipeline.train_dataset(sequences, num_frames=9, batch_size=8, seed=0)[0]
    state = loop.init_state(config, task, sample)
    manager = checkpoint.CheckpointManager(checkpoint.checkpoint_directory(workdir))
    manager.save(1, state.to_checkpoint(), config=config)
    manager.wait()
    manager.close()
    checkpoint.save_config(workdir, config)
    return str(workdir)


def _gpc_config(tiny_data_dir, tgt_workdir="", **train):
    """configs/gpc_base.py:tiny shrunk like helpers.tiny_config (T=9, dim 16, one layer)."""
    tgt_config = helpers.tiny_config(tiny_data_dir, **train)
    config = gpc_base.get_config("tiny")
    config.data, config.train, config.eval = tgt_config.data, tgt_config.train, tgt_config.eval
    config.model.update(dim=16, depth=1, num_heads=2, max_frames=9)
    config.refine.update(selection="top_fraction", num_steps=2, num_hypotheses=2)
    config.eval.max_windows = 24
    config.tgt_workdir = tgt_workdir
    config.train_from_gt_noise = not tgt_workdir
    return config


def _train_batch(config):
    sequences = pipeline.load_sequences(config.data.name, config.data.data_dir, "train")
    dataset = pipeline.train_dataset(sequences, num_frames=9, batch_size=8, seed=0)
    return dataset[0]


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("coarse_start_fraction", [0.0, 1.0])
def test_gpc_from_gt_noise_learns_a_fixed_batch(tiny_data_dir, coarse_start_fraction):
    config = _gpc_config(tiny_data_dir, num_steps=60, learning_rate=3e-3, warmup_steps=5)
    config.diffusion.coarse_start_fraction = coarse_start_fraction
    task = registry.get_task(config)
    assert isinstance(task, gpc_tasks.GPCTask) and task.tgt_model is None
    sample = _train_batch(config)
    batch = jax.device_put(pipeline.device_batch(sample))
    state = loop.init_state(config, task, sample)
    step = jax.jit(
        functools.partial(steps.train_step, task=task, config=config), compiler_options=_FAST
    )
    # The same noise, levels and simulated coarse poses before and after training.
    loss = jax.jit(
        lambda p: task.loss_fn(p, batch, jax.random.PRNGKey(7), False)[1], compiler_options=_FAST
    )
    before = loss(state.params)
    history = []
    for _ in range(config.train.num_steps):
        state, metrics = step(state, batch)
        history.append(metrics["loss"])
    after = loss(state.params)
    assert np.all(np.isfinite(jax.device_get(history)))
    # A fresh residual denoiser returns the coarse pose; training beats it clearly.
    np.testing.assert_allclose(before["x0_mpjpe_mm"], before["coarse_mpjpe_mm"], rtol=1e-5)
    assert after["loss"] < 0.8 * before["loss"], (before, after)
    assert after["x0_mpjpe_mm"] < 0.85 * before["coarse_mpjpe_mm"]


def test_x0_objective_matches_numpy():
    rng = np.random.default_rng(9)
    pred, target = rng.normal(size=(2, 2, 5, 17, 3)).astype(np.float32)
    frame_mask = np.array([[1, 1, 0, 1, 1], [1, 0, 0, 0, 0]], np.float32)
    config = gpc_base.get_config("tiny").loss
    config.joint_weights = tuple(rng.uniform(0.5, 2, 17))
    loss, metrics = gpc_tasks.x0_objective(pred, target, target, frame_mask, config)
    w = np.asarray(config.joint_weights) / np.mean(config.joint_weights)
    err = (np.linalg.norm(pred - target, axis=-1) * w).mean(-1)
    mpjpe = (err * frame_mask).sum() / frame_mask.sum()
    vel = np.linalg.norm(np.diff(pred, axis=1) - np.diff(target, axis=1), axis=-1).mean(-1)
    vmask = frame_mask[:, 1:] * frame_mask[:, :-1]
    velocity = (vel * vmask).sum() / vmask.sum()
    np.testing.assert_allclose(metrics["x0_mpjpe_mm"], 1000 * mpjpe, rtol=1e-5)
    np.testing.assert_allclose(metrics["x0_velocity_mm"], 1000 * velocity, rtol=1e-5)
    np.testing.assert_allclose(loss, config.mpjpe * mpjpe + config.velocity * velocity, rtol=1e-5)


def test_gpc_task_config_errors(tiny_data_dir, tmp_path):
    config = _gpc_config(tiny_data_dir)
    config.train_from_gt_noise = False
    with pytest.raises(ValueError, match="tgt_workdir is empty"):
        registry.get_task(config)
    config.tgt_workdir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        registry.get_task(config)
    config.task = "nope"
    with pytest.raises(ValueError, match=r"known tasks: \['e2e', 'gpc', 'tgt'\]"):
        registry.get_task(config)


@pytest.fixture(scope="module")
def gpc_run(base, tiny_data_dir, tgt_workdir):
    """A GPC trained 2 steps on the frozen TGT, evaluated at the end by the loop."""
    workdir = base / "gpc_run"
    config = _gpc_config(tiny_data_dir, tgt_workdir, num_steps=2, eval_every=2)
    return workdir, config, loop.train_and_evaluate(config, str(workdir))


def test_frozen_tgt_is_not_trained(gpc_run, tgt_workdir):
    workdir, config, result = gpc_run
    gpc_params = result.state.params
    assert "joint_embed" in gpc_params and "limb_embed" not in gpc_params
    # The optimiser state holds Adam's mu and nu of the GPC parameters and nothing else.
    gpc_shapes = [np.shape(x) for x in jax.tree.leaves(gpc_params)]
    opt_shapes = [np.shape(x) for x in jax.tree.leaves(result.state.opt_state) if np.ndim(x)]
    assert sorted(opt_shapes) == sorted(gpc_shapes * 2)
    _, tgt_params = checkpoint.restore_params(tgt_workdir)
    assert sum(np.size(x) for x in jax.tree.leaves(tgt_params)) > 0
    # The frozen TGT is the checkpoint's: the task holds exactly those parameters.
    _assert_trees_equal(registry.get_task(config).tgt_params, tgt_params)
    assert np.isfinite(result.train_metrics["loss"])
    saved = checkpoint.load_config(workdir)
    assert saved.task == "gpc" and saved.tgt_workdir == tgt_workdir
    # The TGT it was trained on is recorded (config.json and every checkpoint's config).
    assert saved.tgt_provenance.to_dict() == {
        "workdir": tgt_workdir,
        "step": 1,
        "fingerprint": checkpoint.params_fingerprint(tgt_params),
    }
    assert checkpoint.load_config(workdir / "checkpoints" / "2").tgt_provenance.step == 1
    # Resumed there, the run keeps the recorded TGT step; a fresh workdir or a TGT task has none.
    resumed = gpc_tasks.GPCTask.resumed_config(config, str(workdir))
    assert resumed.tgt_provenance.to_dict() == saved.tgt_provenance.to_dict()
    assert "tgt_provenance" not in config
    fresh = gpc_tasks.GPCTask.resumed_config(config, str(workdir / "fresh"))
    assert "tgt_provenance" not in fresh
    assert tasks.TGTTask.resumed_config(saved, str(workdir)) is saved


def test_evaluating_a_gpc_with_another_tgt_is_refused(gpc_run, tgt_workdir, base):
    workdir, config, _ = gpc_run
    other = base / "other_tgt"
    saved, state = checkpoint.CheckpointManager(
        pathlib.Path(tgt_workdir) / "checkpoints", read_only=True
    ).restore_raw(1)
    state["ema_params"] = jax.tree.map(lambda x: x * 0.5, state["ema_params"])
    manager = checkpoint.CheckpointManager(other / "checkpoints")
    manager.save(1, state, config=ml_collections.ConfigDict(saved))
    manager.wait()
    manager.close()
    with pytest.raises(checkpoint.TGTMismatchError, match=f"found at {other} step 1 has sha256"):
        loop.evaluate_checkpoint(str(workdir), step="latest", tgt_workdir=str(other))


def test_gpc_workdir_evaluation_tables(gpc_run, tgt_workdir):
    workdir, config, trained = gpc_run
    result, written = loop.evaluate_checkpoint(str(workdir), step="latest")
    summary = result.summary
    assert summary["p1"] == pytest.approx(trained.eval_metrics["p1"], rel=1e-6)
    for key in ("coarse", "h1", "mean", "reproj"):
        assert np.isfinite(summary[f"{key}_p1"]) and np.isfinite(summary[f"{key}_p2"])
    assert summary["p1"] == summary["mean_p1"] and result.deployable == "mean"
    # top_fraction 0.25: exactly 4 of the 16 non-root joints of every frame.
    assert summary["resampled_fraction"] == pytest.approx(0.25)
    assert 0.0 <= summary["resampled_fraction"] <= 1.0
    # The confident joints come back bit-identical: their errors are exactly unchanged.
    assert summary["kept_error_before"] == summary["kept_error_after"]
    kept = [result.refinement[f"Kept err {when}"] for when in ("before", "after")]
    assert kept[0].actions == kept[1].actions and kept[0].frames == kept[1].frames
    assert -1.0 <= summary["sigma_error_corr"] <= 1.0

    # The coarse pose is the TGT's flip-averaged prediction, as a TGT-only evaluation sees it.
    tgt_config = checkpoint.load_config(tgt_workdir)
    tgt_config.eval = config.eval
    tgt_result, _ = loop.evaluate_checkpoint(tgt_workdir, step="latest", config=tgt_config)
    assert summary["coarse_p1"] == pytest.approx(tgt_result.summary["p1"], rel=1e-5)

    payload = json.loads((workdir / "eval" / "eval.json").read_text())
    assert payload["deployable"] == "mean" and payload["flip"] is True
    assert set(payload["refinement"]) >= {"Coarse P1", "Mean P1", "H=1 P2", "Resampled (%)"}
    assert payload["summary"]["kept_error_after"] == summary["kept_error_after"]
    csv_rows = (workdir / "eval" / "eval.csv").read_text().splitlines()
    assert any(r.startswith("Resampled err after,") for r in csv_rows)
    markdown = written["markdown"]
    assert "| Mean P1 (deployed) |" in markdown and "| Sigma-error corr |" in markdown
    assert (workdir / "eval" / "step_00000002.md").is_file()

    # Both workdirs copied elsewhere together: evaluation finds the TGT beside the GPC, by the
    # rule inference uses (checkpoint.paired_tgt_workdir), and gets the same numbers.
    moved = workdir.parent / "moved"
    shutil.copytree(workdir, moved / "gpc")
    shutil.copytree(tgt_workdir, moved / pathlib.Path(config.tgt_workdir).name)
    shutil.move(tgt_workdir, str(tgt_workdir) + ".away")
    try:
        copied, _ = loop.evaluate_checkpoint(str(moved / "gpc"), step="latest")
    finally:
        shutil.move(str(tgt_workdir) + ".away", tgt_workdir)
    assert copied.summary["p1"] == summary["p1"]


def test_single_and_pmap_gpc_steps_agree(tiny_data_dir, tgt_workdir, compilation_cache):
    config = _gpc_config(tiny_data_dir, tgt_workdir, batch_size=16)
    report = helpers.run_device_script(
        _LAYOUTS_SCRIPT, [json.dumps(checkpoint.config_to_dict(config))], compilation_cache, 8
    )
    assert report["moved"] > 1e-4, report
    assert report["pmap"] < 1e-6, report
    assert report["sharded"] < 1e-6, report


class _Interrupted(Exception):
    """Stands in for a preemption."""


def _interrupt_after(monkeypatch, batches):
    real = pipeline.train_iterator

    class Iterator:
        def __init__(self, dataset, **options):
            self._iterator, self._served = real(dataset, **options), 0

        def __next__(self):
            if self._served == batches:
                raise _Interrupted()
            self._served += 1
            return next(self._iterator)

        def get_state(self):
            return self._iterator.get_state()

        def set_state(self, state):
            self._iterator.set_state(state)

    monkeypatch.setattr(pipeline, "train_iterator", Iterator)


def test_e2e_finetuning_resumes_exactly(base, tiny_data_dir, tgt_workdir, gpc_run, monkeypatch):
    gpc_workdir = str(gpc_run[0])
    config = e2e_finetune.get_config("tiny")
    small = _gpc_config(tiny_data_dir, num_steps=4, checkpoint_every=2, log_every=2, eval_every=4)
    config.data, config.train, config.eval = small.data, small.train, small.eval
    config.refine = small.refine
    config.gpc_workdir = gpc_workdir  # its saved tgt_workdir is the TGT
    full = loop.train_and_evaluate(config, str(base / "e2e_full"))

    _interrupt_after(monkeypatch, 3)
    with pytest.raises(_Interrupted):
        loop.train_and_evaluate(config, str(base / "e2e_resumed"))
    monkeypatch.undo()
    resumed = loop.train_and_evaluate(config, str(base / "e2e_resumed"))
    assert int(resumed.state.step) == int(full.state.step) == 4
    _assert_trees_equal(resumed.state.to_checkpoint(), full.state.to_checkpoint())
    assert set(full.state.params) == {"tgt", "gpc"}
    assert np.isfinite(full.train_metrics["refined_mpjpe_mm"])
    # The e2e predict refines like the GPC's: the same refinement tables, deterministically.
    assert resumed.eval_metrics == full.eval_metrics
    summary = full.eval_metrics
    assert summary["p1"] == summary["mean_p1"] and summary["resampled_fraction"] == 0.25
    assert summary["kept_error_before"] == summary["kept_error_after"]

    # Started from both checkpoints; both parts moved.
    _, tgt_params = checkpoint.restore_params(tgt_workdir)
    _, gpc_params = checkpoint.restore_params(gpc_workdir)
    for part, start in (("tgt", tgt_params), ("gpc", gpc_params)):
        leaves = zip(jax.tree.leaves(full.state.params[part]), jax.tree.leaves(start), strict=True)
        assert max(float(np.max(np.abs(a - b))) for a, b in leaves) > 0

    # The saved config embeds both saved configs, so inference serves the workdir alone.
    saved = checkpoint.load_config(base / "e2e_full")
    assert saved.tgt_workdir == tgt_workdir and saved.gpc.task == "gpc"
    assert saved.tgt.model.dim == 32 and saved.gpc.model.dim == 16
    assert inference.load_predictor(base / "e2e_full").has_refiner
