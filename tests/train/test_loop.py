"""The training loop on the real tiny TGT and the tiny synthetic dataset: overfitting, exact
resume, NaN detection, logging files, periodic evaluation and the best checkpoint."""

import functools
import json
import os
import socket

import jax
import numpy as np
import optax
import pytest

from gentg_jax import checkpoint, workdir_lock
from gentg_jax.data import pipeline
from gentg_jax.train import loop, registry, steps, writers
from gentg_jax.train import state as state_lib
from tests import helpers


class _Interrupted(Exception):
    """Stands in for a preemption."""


class _ScriptedIterator:
    """Wraps the training iterator: raises after `stop_after` batches or poisons batch `nan_at`."""

    def __init__(self, iterator, stop_after=None, nan_at=None):
        self._iterator, self._stop_after, self._nan_at, self._served = (
            iterator,
            stop_after,
            nan_at,
            0,
        )

    def __next__(self):
        if self._served == self._stop_after:
            raise _Interrupted()
        batch = next(self._iterator)
        self._served += 1
        if self._served == self._nan_at:
            batch["keypoints_2d"] = np.full_like(batch["keypoints_2d"], np.nan)
        return batch

    def get_state(self):
        return self._iterator.get_state()

    def set_state(self, state):
        self._iterator.set_state(state)


def _script_iterator(monkeypatch, **kwargs):
    real = pipeline.train_iterator
    monkeypatch.setattr(
        pipeline,
        "train_iterator",
        lambda dataset, **options: _ScriptedIterator(real(dataset, **options), **kwargs),
    )


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_learning_rate_schedule_warms_up_and_decays(tiny_data_dir):
    config = helpers.tiny_config(tiny_data_dir, num_steps=100, warmup_steps=10)
    schedule = state_lib.learning_rate_schedule(config.train)
    lr = config.train.learning_rate
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)], [0, lr / 2, lr], rtol=1e-6)
    np.testing.assert_allclose(schedule(100), lr * config.train.final_lr_fraction, rtol=1e-5)
    # Halfway through the cosine the rate is the mean of its ends.
    np.testing.assert_allclose(
        schedule(55), lr * (1 + config.train.final_lr_fraction) / 2, rtol=1e-5
    )


def test_sigma_head_learning_rate_stays_constant_while_the_rest_decays(tiny_data_dir):
    config = helpers.tiny_config(tiny_data_dir, num_steps=100, warmup_steps=10)
    config.train.update(weight_decay=0.0, grad_clip=0.0, sigma_learning_rate=1e-3)
    params = {
        "layers": {"kernel": np.zeros((2, 2), np.float32)},
        "sigma": {"kernel": np.zeros((2, 1), np.float32)},
        "sigma_hidden": {"bias": np.zeros((3,), np.float32)},
    }
    grads = jax.tree.map(np.ones_like, params)  # constant gradients: Adam steps by the rate
    tx = state_lib.make_optimizer(config.train)
    opt_state, steps = tx.init(params), []
    for _ in range(100):
        updates, opt_state = tx.update(grads, opt_state, params)
        steps.append(jax.tree.map(lambda u: float(-np.asarray(u).flat[0]), updates))
    schedule = state_lib.learning_rate_schedule(config.train)
    for step in (5, 50, 99):
        want_head = 1e-3 * min(step / 10, 1.0)
        assert steps[step]["sigma"]["kernel"] == pytest.approx(want_head, rel=1e-3)
        assert steps[step]["sigma_hidden"]["bias"] == pytest.approx(want_head, rel=1e-3)
        assert steps[step]["layers"]["kernel"] == pytest.approx(float(schedule(step)), rel=1e-3)


def test_check_finite_names_step_and_metric():
    writers.check_finite({"loss": 1.0, "grad_norm": 2.0}, step=5)
    with pytest.raises(writers.NonFiniteError, match="non-finite metric at step 9: grad_norm=inf"):
        writers.check_finite({"loss": 1.0, "grad_norm": float("inf")}, step=9)
    with pytest.raises(FloatingPointError, match="non-finite loss at step 2"):
        writers.check_finite({"loss": float("nan")}, step=2)


def test_tiny_model_overfits_a_fixed_batch(tiny_data_dir):
    config = helpers.tiny_config(tiny_data_dir, num_steps=250, learning_rate=3e-3, warmup_steps=10)
    task = registry.get_task(config)
    sequences = pipeline.load_sequences(config.data.name, tiny_data_dir, "train")
    dataset = pipeline.train_dataset(sequences, num_frames=9, batch_size=8, seed=0)
    batch = jax.device_put(pipeline.device_batch(dataset[0]))
    state = loop.init_state(config, task, dataset[0])
    step = jax.jit(functools.partial(steps.train_step, task=task, config=config))
    history = []
    for _ in range(config.train.num_steps):
        state, metrics = step(state, batch)
        history.append(metrics)
    mpjpe = [float(m["mpjpe_mm"]) for m in jax.device_get(history)]
    assert int(state.step) == 250
    assert mpjpe[-1] < mpjpe[0] / 10, (mpjpe[0], mpjpe[-1])
    # EMA parameters trail the raw ones but moved away from the initialisation.
    ema_gap = optax.tree.norm(jax.tree.map(lambda a, b: a - b, state.ema_params, state.params))
    assert 0 < float(ema_gap) < float(optax.tree.norm(state.params))


def test_micro_batches_give_the_whole_batch_gradient(tiny_data_dir):
    config = helpers.tiny_config(tiny_data_dir)
    # The velocity term averages over frame pairs, not frames: weighting by frames is exact
    # for the other terms only.
    config.loss.velocity = 0.0
    task = registry.get_task(config)
    sequences = pipeline.load_sequences(config.data.name, tiny_data_dir, "train")
    dataset = pipeline.train_dataset(sequences, num_frames=9, batch_size=8, seed=0)
    batch = jax.device_put(pipeline.device_batch(dataset[0]))
    counted = np.asarray(batch["frame_mask"]).sum(1)
    assert len(set(counted[:4].tolist() + counted[4:].tolist())) > 1  # uneven micro-batches
    params = loop.init_state(config, task, dataset[0]).params
    rng = jax.random.key(1)
    run = jax.jit(steps.loss_and_grads, static_argnums=(0, 4))
    (loss, metrics), grads = run(task, params, batch, rng, 0)
    for micro_batch in (2, 4):
        (micro_loss, micro_metrics), micro_grads = run(task, params, batch, rng, micro_batch)
        np.testing.assert_allclose(micro_loss, loss, rtol=1e-5)
        np.testing.assert_allclose(micro_metrics["mpjpe_mm"], metrics["mpjpe_mm"], rtol=1e-5)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), micro_grads, grads
        )
    with pytest.raises(ValueError, match="micro_batch_size=3 does not divide"):
        steps.loss_and_grads(task, params, batch, rng, 3)


def test_resumed_run_matches_uninterrupted_run(tiny_data_dir, tmp_path, monkeypatch, caplog):
    config = helpers.tiny_config(tiny_data_dir, num_steps=6, checkpoint_every=3, log_every=2)
    full = loop.train_and_evaluate(config, str(tmp_path / "full"))

    _script_iterator(monkeypatch, stop_after=4)  # preempted while fetching batch 5
    with pytest.raises(_Interrupted):
        loop.train_and_evaluate(config, str(tmp_path / "resumed"))
    manager = checkpoint.CheckpointManager(tmp_path / "resumed" / "checkpoints", read_only=True)
    assert manager.all_steps() == [3]
    monkeypatch.undo()
    resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))

    assert int(resumed.state.step) == int(full.state.step) == 6
    _assert_trees_equal(resumed.state.to_checkpoint(), full.state.to_checkpoint())
    assert resumed.train_metrics["loss"] == full.train_metrics["loss"]
    # One metrics.jsonl row per step: the resumed run dropped the rows logged after step 3.
    steps = [[json.loads(line)["step"] for line in open(tmp_path / run / "metrics.jsonl")]
             for run in ("full", "resumed")]  # fmt: skip
    assert steps[0] == steps[1] == [2, 4, 6]
    # A run that resumes at num_steps does nothing and returns the saved state.
    again = loop.train_and_evaluate(config, str(tmp_path / "full"))
    _assert_trees_equal(again.state.params, full.state.params)

    # A bit flipped in the latest step: its checksum fails, the run resumes from step 3 (the
    # damaged step moved out of the way, to be saved again) and ends with the same parameters.
    latest = tmp_path / "resumed" / "checkpoints" / "6"
    data = max((latest / "state").rglob("d/*"), key=lambda p: p.stat().st_size)
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0x01
    data.write_bytes(bytes(content))
    with caplog.at_level("WARNING"):
        repaired = loop.train_and_evaluate(config, str(tmp_path / "resumed"))
    assert f"skipped damaged checkpoint {latest} (state/" in caplog.text
    assert "differs from its checksum" in caplog.text
    assert "using step 3" in caplog.text
    _assert_trees_equal(repaired.state.to_checkpoint(), full.state.to_checkpoint())
    assert (tmp_path / "resumed" / checkpoint.DAMAGED / "6").is_dir()
    manager = checkpoint.CheckpointManager(latest.parent, read_only=True)
    assert manager.all_steps() == [3, 6] and manager.verify(6) is None


def test_resuming_with_another_model_names_the_fields_and_keeps_the_checkpoints(
    tiny_data_dir, tmp_path
):
    # A run trained with the sigma head on the trunk (the default before 2026-12-07), resumed
    # with the command that now means the detached MLP head.
    old = helpers.tiny_config(tiny_data_dir, num_steps=2)
    old.model.update(sigma_stop_gradient=False, sigma_hidden=0)
    loop.train_and_evaluate(old, str(tmp_path))
    new = helpers.tiny_config(tiny_data_dir, num_steps=4)
    expected = (
        f"cannot resume {tmp_path}: .*model.sigma_hidden: 0 -> 64; "
        "model.sigma_stop_gradient: False -> True\\)"
    )
    with pytest.raises(checkpoint.CheckpointError, match=expected):
        loop.train_and_evaluate(new, str(tmp_path))
    manager = checkpoint.CheckpointManager(tmp_path / "checkpoints", read_only=True)
    assert manager.all_steps() == [2] and not (tmp_path / checkpoint.DAMAGED).exists()
    # The saved values resume it.
    new.model.update(sigma_stop_gradient=False, sigma_hidden=0)
    assert int(loop.train_and_evaluate(new, str(tmp_path)).state.step) == 4


def test_a_second_writer_is_refused_and_changes_nothing(tiny_data_dir, tmp_path):
    config = helpers.tiny_config(tiny_data_dir, num_steps=2)
    # A live process of this host (the test's parent) holds the workdir.
    holder = {"host": socket.gethostname(), "pid": os.getppid(), "since": "2026-01-01T00:00:00"}
    lock_file = tmp_path / workdir_lock.LOCK_FILE
    lock_file.write_text(json.dumps({**holder, "purpose": "training tgt"}))
    before = sorted(p.name for p in tmp_path.iterdir())
    held = f"pid {os.getppid()}, since 2026-01-01"
    with pytest.raises(workdir_lock.WorkdirLockedError, match=held):
        loop.train_and_evaluate(config, str(tmp_path))
    with pytest.raises(workdir_lock.WorkdirLockedError, match="another run writes to it"):
        loop.evaluate_checkpoint(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


class _CtrlC(_ScriptedIterator):
    """Ctrl-C (KeyboardInterrupt) while fetching batch stop_after + 1."""

    def __next__(self):
        if self._served == self._stop_after:
            raise KeyboardInterrupt
        return super().__next__()


def test_ctrl_c_names_the_step_and_where_a_rerun_resumes(tiny_data_dir, tmp_path, monkeypatch):
    real = pipeline.train_iterator
    monkeypatch.setattr(
        pipeline, "train_iterator", lambda dataset, **kw: _CtrlC(real(dataset, **kw), 3)
    )
    config = helpers.tiny_config(tiny_data_dir, num_steps=6, checkpoint_every=2)
    with pytest.raises(loop.Interrupted) as interrupted:
        loop.train_and_evaluate(config, str(tmp_path))
    assert str(interrupted.value) == (
        "interrupted at step 3; rerun the same command to resume (from the checkpoint of step 2)"
    )
    assert isinstance(interrupted.value, KeyboardInterrupt)
    assert [row["step"] for row in writers.read_metrics(tmp_path)] == [1, 2, 3]


def test_non_finite_loss_stops_the_run_naming_the_step(tiny_data_dir, tmp_path, monkeypatch):
    _script_iterator(monkeypatch, nan_at=3)
    config = helpers.tiny_config(tiny_data_dir, num_steps=6, log_every=2, checkpoint_every=2)
    with pytest.raises(writers.NonFiniteError, match="non-finite loss at step 3"):
        loop.train_and_evaluate(config, str(tmp_path))
    # Step 2 was saved; nothing at or after the bad step was.
    manager = checkpoint.CheckpointManager(tmp_path / "checkpoints", read_only=True)
    assert manager.all_steps() == [2]


def test_logs_evaluations_and_best_checkpoint(tiny_data_dir, tmp_path):
    config = helpers.tiny_config(
        tiny_data_dir,
        num_steps=6,
        log_every=3,
        eval_every=3,
        checkpoint_every=0,
        keep_checkpoints=1,
    )
    result = loop.train_and_evaluate(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train_rows = [r for r in rows if "train/loss" in r]
    eval_p1 = {r["step"]: r["eval/p1"] for r in rows if "eval/p1" in r}
    assert [r["step"] for r in train_rows] == [3, 6]
    assert sorted(eval_p1) == [3, 6]
    assert all(r["train/steps_per_s"] > 0 for r in train_rows)
    assert result.eval_metrics["p1"] == eval_p1[6]
    assert list(tmp_path.glob("events.out.tfevents.*"))
    for step in (3, 6):
        assert (tmp_path / "eval" / f"step_{step:08d}.md").is_file()
    # keep=1 keeps the latest step and the best-P1 step.
    manager = checkpoint.CheckpointManager(tmp_path / "checkpoints", read_only=True)
    best = min(eval_p1, key=eval_p1.get)
    assert manager.best_step() == best
    assert manager.all_steps() == sorted({best, 6})
    saved = checkpoint.load_config(tmp_path)
    assert saved.train.num_steps == 6 and saved.model.dim == 32
