"""Checkpoints: config JSON, keep/best policy, exact restore, restore of an 8-device pmap run in
a 1-device process, and clear errors for missing, partial and corrupt checkpoints."""

import json
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from configs import tgt_base
from gentg_jax import checkpoint
from gentg_jax.data import pipeline
from gentg_jax.train import registry
from tests import helpers

# An 8-device pmap training run that saves its final step and its own copy of the parameters.
_PMAP_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    from tests import helpers
    from gentg_jax.train import loop

    assert jax.local_device_count() == 8
    tiny_data_dir, workdir, out = sys.argv[1:]
    config = helpers.tiny_config(tiny_data_dir, num_steps=2, parallel="pmap")
    result = loop.train_and_evaluate(config, workdir)
    np.savez(out, *jax.tree.leaves(result.state.ema_params))
    """
)


@pytest.fixture(scope="module")
def pmap_run(tiny_data_dir, compilation_cache, tmp_path_factory):
    """(workdir, EMA parameter leaves) of a 2-step pmap run on 8 CPU devices."""
    base = tmp_path_factory.mktemp("pmap_run")
    workdir, out = base / "workdir", base / "params.npz"
    result = subprocess.run(
        [sys.executable, "-c", _PMAP_SCRIPT, tiny_data_dir, str(workdir), str(out)],
        env=helpers.subprocess_env(compilation_cache, 8),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    with np.load(out) as saved:
        leaves = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    return workdir, leaves


def _tree(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "step": np.asarray(seed, np.int32),
        "params": {"w": rng.normal(size=(3, 4)).astype(np.float32)},
        "rng": np.asarray([0, seed], np.uint32),
    }


def test_config_json_roundtrip(tmp_path):
    config = tgt_base.get_config("tiny")
    path = checkpoint.save_config(tmp_path, config)
    assert path == tmp_path / "config.json"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp files left
    loaded = checkpoint.load_config(tmp_path)
    assert loaded.to_dict() == json.loads(json.dumps(config.to_dict()))
    assert list(loaded.loss.joint_weights) == list(config.loss.joint_weights)
    with pytest.raises(FileNotFoundError, match="no workdir or checkpoint"):
        checkpoint.load_config(tmp_path / "missing")


def test_manager_keeps_latest_and_best(tmp_path):
    manager = checkpoint.CheckpointManager(tmp_path / "checkpoints", keep=2)
    config = tgt_base.get_config("tiny")
    p1 = {1: 5.0, 3: 7.0}
    for step in range(1, 6):
        metrics = {"p1": p1[step]} if step in p1 else None
        assert manager.save(
            step, _tree(step), config=config, data_state={"next_index": step}, metrics=metrics
        )
    assert not manager.save(5, _tree(5), config=config)  # already saved
    manager.wait()
    assert manager.all_steps() == [1, 4, 5]  # latest two plus the best P1 (step 1)
    assert manager.best_step() == 1
    restored, data_state = manager.restore(4, _tree(0))
    assert data_state == {"next_index": 4}
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(_tree(4)), strict=True):
        np.testing.assert_array_equal(got, want)
    manager.close()
    assert checkpoint.resolve_step(tmp_path, "best") == 1
    assert checkpoint.load_config(tmp_path / "checkpoints" / "4").model.dim == config.model.dim


def test_reading_a_checkpoint_warns_nothing_and_writes_nothing(tmp_path, caplog):
    writer = checkpoint.CheckpointManager(tmp_path / "checkpoints")
    writer.save(1, _tree(1), config=tgt_base.get_config("tiny"))
    writer.wait()
    writer.close()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    caplog.clear()
    with caplog.at_level("WARNING"):
        config, params = checkpoint.restore_params(tmp_path, ema=False)
    assert params["w"].shape == (3, 4) and config.task == "tgt"
    assert not [r for r in caplog.records if r.levelno >= 30], caplog.text  # no false warnings
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    reader = checkpoint.CheckpointManager(tmp_path / "checkpoints", read_only=True)
    with pytest.raises(ValueError, match="read-only"):
        reader.save(2, _tree(2), config=config)
    reader.close()


def test_restore_params_of_pmap_run_on_one_device(pmap_run, tiny_data_dir):
    workdir, ema_leaves = pmap_run
    assert jax.device_count() == 1
    config, params = checkpoint.restore_params(workdir)
    assert config.train.parallel == "pmap"
    for got, want in zip(jax.tree.leaves(params), ema_leaves, strict=True):
        assert got.shape == want.shape  # no leading device axis
        np.testing.assert_array_equal(got, want)
    # The same checkpoint through its step directory and by step number.
    _, by_dir = checkpoint.restore_params(workdir / "checkpoints" / "2")
    _, raw = checkpoint.restore_params(workdir, step=2, ema=False)
    np.testing.assert_array_equal(jax.tree.leaves(by_dir)[0], ema_leaves[0])
    raw_leaves = jax.tree.leaves(raw)
    assert any(not np.array_equal(a, b) for a, b in zip(raw_leaves, ema_leaves, strict=True))
    # The restored parameters drive the model on this single device.
    sequences = pipeline.load_sequences(config.data.name, tiny_data_dir, "test")
    batch = next(pipeline.eval_batches(sequences, num_frames=9, batch_size=4))
    outputs = registry.get_task(config).predict(params, pipeline.device_batch(batch))
    assert outputs["joints_3d"].shape == (4, 9, 17, 3)
    assert np.all(np.isfinite(outputs["joints_3d"]))


def test_missing_checkpoints_raise_file_not_found(pmap_run, tmp_path):
    workdir, _ = pmap_run
    with pytest.raises(FileNotFoundError, match="no workdir or checkpoint"):
        checkpoint.restore_params(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.restore_params(tmp_path)  # exists, holds no checkpoints
    with pytest.raises(FileNotFoundError, match="no checkpoint for step 7"):
        checkpoint.restore_params(workdir, step=7)
    with pytest.raises(FileNotFoundError, match="eval metrics"):
        checkpoint.restore_params(workdir, step="best")
    with pytest.raises(ValueError, match="expected an int, 'latest' or 'best'"):
        checkpoint.restore_params(workdir, step="first")
    # A save that never finished (orbax's temporary directory) is not a checkpoint.
    partial = tmp_path / "partial"
    shutil.copytree(workdir, partial)
    (partial / "checkpoints" / "2").rename(partial / "checkpoints" / "2.orbax-checkpoint-tmp-1")
    with pytest.raises(FileNotFoundError, match="no complete step"):
        checkpoint.restore_params(partial)


# orbax's failed async read leaves an event-loop callback behind; it is harmless here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["data_files", "metadata", "state_item"])
def test_corrupt_checkpoint_raises_checkpoint_error(pmap_run, tmp_path, damage):
    workdir, _ = pmap_run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    state = copy / "checkpoints" / "2" / "state"
    if damage == "data_files":
        for path in state.rglob("d/*"):
            path.write_bytes(b"garbage")
    elif damage == "metadata":
        (state / "_METADATA").unlink()
    else:
        shutil.rmtree(state)
    with pytest.raises(checkpoint.CheckpointError, match="checkpoints/2 is partial or corrupt"):
        checkpoint.restore_params(copy)


def _largest_data_file(step_dir):
    return max((step_dir / "state").rglob("d/*"), key=lambda p: p.stat().st_size)


def _flip(path):
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))


# How a step gets damaged: truncated, emptied, half-deleted, bit-flipped, or an emptied
# iterator state; "unverified_*" are steps saved without checksum.json (before checksums).
_DAMAGE = {
    "truncated": lambda step: _largest_data_file(step).write_bytes(b"12345"),
    "emptied_step": lambda step: [
        shutil.rmtree(p) if p.is_dir() else p.unlink() for p in list(step.iterdir())
    ],  # fmt: skip
    "state_metadata_missing": lambda step: (step / "state" / "_METADATA").unlink(),
    "iterator_state_emptied": lambda step: (step / "data" / "metadata").write_text(""),
    "bit_flipped": lambda step: _flip(_largest_data_file(step)),
    "unverified_truncated": lambda step: (
        (step / "checksum.json").unlink(),
        [p.write_bytes(p.read_bytes()[:10]) for p in (step / "state").rglob("d/*")],
    ),
    "unverified_iterator_state_emptied": lambda step: (
        (step / "checksum.json").unlink(),
        (step / "data" / "metadata").write_text(""),
    ),
}


@pytest.fixture(scope="module")
def three_steps(tmp_path_factory):
    """A checkpoints directory with steps 1, 2 and 3 of a small state."""
    workdir = tmp_path_factory.mktemp("three_steps")
    manager = checkpoint.CheckpointManager(workdir / "checkpoints")
    for step in (1, 2, 3):
        manager.save(step, _tree(step), config=tgt_base.get_config("tiny"), data_state={"i": step})
    manager.wait()
    manager.close()
    return workdir


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", sorted(_DAMAGE))
def test_damaged_latest_step_falls_back_to_the_previous_one(three_steps, tmp_path, caplog, damage):
    workdir = tmp_path / "copy"
    shutil.copytree(three_steps, workdir)
    latest = workdir / "checkpoints" / "3"
    assert (latest / "checksum.json").is_file()
    _DAMAGE[damage](latest)
    if damage != "unverified_iterator_state_emptied":  # the parameters alone read fine then
        with caplog.at_level("WARNING"):
            restored = checkpoint.load_params(workdir, ema=False)
        assert restored.step == 2
        np.testing.assert_array_equal(restored.params["w"], _tree(2)["params"]["w"])
        assert f"skipped damaged checkpoint {latest} (" in caplog.text
        assert "using step 2" in caplog.text and latest.is_dir()  # a reader moves nothing
        # Asked for by number, the damaged step is an error in one line.
        with pytest.raises(checkpoint.CheckpointError, match=f"{latest} is partial or corrupt: "):
            checkpoint.restore_params(workdir, step=3)
    # A resuming writer restores step 2 with its iterator state and moves step 3 aside.
    manager = checkpoint.CheckpointManager(workdir / "checkpoints")
    step, state, data_state = manager.restore_latest(_tree(0))
    assert (step, data_state, manager.all_steps()) == (2, {"i": 2}, [1, 2])
    assert (workdir / checkpoint.DAMAGED / "3").is_dir()
    assert manager.save(3, _tree(3), config=tgt_base.get_config("tiny"))  # saved again
    manager.close()
    assert checkpoint.load_params(workdir, ema=False).step == 3


def test_every_step_damaged_is_one_clear_error(three_steps, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(three_steps, workdir)
    for step in (1, 2, 3):
        _flip(_largest_data_file(workdir / "checkpoints" / str(step)))
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.restore_params(workdir)
    message = str(error.value)
    assert message.startswith(f"no intact checkpoint in {workdir / 'checkpoints'}: all are")
    assert all(f"step {s}: state/" in message for s in (1, 2, 3)) and "\n" not in message
