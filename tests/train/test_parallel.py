"""Device layouts give the same training step: single-device jit, pmap and sharded jit on 8 CPU
devices, and a two-process (gloo) sharded run against a single-process run."""

import json
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from gentg_jax import checkpoint
from gentg_jax.train import loop, parallel
from tests import helpers

# One process with 8 CPU devices: two steps on the same global batches in each layout.
_LAYOUTS_SCRIPT = textwrap.dedent(
    """
    import functools, json, sys
    import jax, numpy as np
    from tests import helpers
    from gentg_jax.data import pipeline
    from gentg_jax.train import loop, parallel, registry, steps

    assert jax.device_count() == 8, jax.devices()
    assert parallel.DataParallel("auto").mode == "sharded"
    try:
        parallel.DataParallel("pmap").host_batch_size(12)
        raise AssertionError("a batch of 12 does not split over 8 devices")
    except ValueError as error:
        assert "not divisible by the 8 devices" in str(error)
    config = helpers.tiny_config(sys.argv[1], batch_size=16)
    # Frame-count weighting is exact for every term but the velocity one (frame pairs).
    config.loss.velocity = 0.0
    task = registry.get_task(config)
    sequences = pipeline.load_sequences(config.data.name, config.data.data_dir, "train")
    dataset = pipeline.train_dataset(
        sequences, num_frames=9, batch_size=16, seed=0, process_index=0, process_count=1
    )
    batches = [pipeline.device_batch(dataset[i]) for i in range(2)]
    # Windows at sequence ends count fewer frames: pmap must weight the devices by them.
    assert any(np.any(batch["frame_mask"] == 0) for batch in batches)
    initial = loop.init_state(config, task, dataset[0])
    params = {}
    # (layout, micro_batch_size): micro-batches are per device (2 windows each here).
    runs = [("single", 0), ("pmap", 0), ("sharded", 0), ("single", 4), ("pmap", 1), ("sharded", 1)]
    for mode, micro_batch in runs:
        layout = parallel.DataParallel(mode)
        config.train.micro_batch_size = micro_batch
        step = layout.compile_step(functools.partial(steps.train_step, task=task, config=config))
        state = layout.replicate(initial)
        for batch in batches:
            state, metrics = step(state, layout.shard_batch(batch))
        params[f"{mode}/{micro_batch}"] = layout.unreplicate(state.params)
    # Parameters whose gradient is exactly zero in exact arithmetic (the key third of the qkv
    # bias, (..., 3, heads, head_dim): softmax ignores a shift; the root-subtracted joint-head bias)
    # get float noise that Adam normalises up to ~1e-5 per step: compared apart, more loosely.
    def pieces(path, leaf):  # (array, zero_gradient) parts of one parameter
        name = jax.tree_util.keystr(path)
        if "['qkv']['bias']" in name:
            return [(leaf[..., 1, :, :], True), (leaf[..., 0::2, :, :], False)]
        return [(leaf, "['joint_head']['bias']" in name)]

    def max_diff(leaves, noisy):
        pairs = zip(
            jax.tree_util.tree_leaves_with_path(params["single/0"]), jax.tree.leaves(leaves)
        )
        return max(
            float(np.max(np.abs(a - b)))
            for (path, want), got in pairs
            for (a, zero), (b, _) in zip(pieces(path, want), pieces(path, got))
            if zero == noisy
        )

    runs = [run for run in params if run != "single/0"]
    diffs = {run: max_diff(params[run], False) for run in runs}
    noisy = {run: max_diff(params[run], True) for run in runs}
    moved = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(jax.tree.leaves(initial.params), jax.tree.leaves(params["single/0"]))
    )
    print("RESULT", json.dumps({"diffs": diffs, "noisy": noisy, "moved": moved}))
    """
)

# One of two processes with 2 CPU devices each, joined over gloo on 127.0.0.1.
_WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    process_id, port, data_dir, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 4, 2)
    from tests import helpers
    from gentg_jax.train import loop, parallel
    config = helpers.tiny_config(data_dir, num_steps=2, parallel="sharded")
    loop.train_and_evaluate(config, workdir)
    print("DONE", process_id)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_layout_choice_on_one_device():
    assert parallel.DataParallel("auto").mode == "single"
    assert parallel.DataParallel("single").host_batch_size(6) == 6
    with pytest.raises(ValueError, match="config.train.parallel='ring'"):
        parallel.DataParallel("ring")


def test_single_pmap_sharded_steps_agree(tiny_data_dir, compilation_cache):
    report = helpers.run_device_script(_LAYOUTS_SCRIPT, [tiny_data_dir], compilation_cache, 8)
    assert report["moved"] > 1e-4  # the steps did change the parameters
    # pmap, sharded jit and micro-batched steps: the single-device whole-batch parameters.
    assert set(report["diffs"]) == {"pmap/0", "sharded/0", "single/4", "pmap/1", "sharded/1"}
    assert max(report["diffs"].values()) < 1e-5, report
    assert max(report["noisy"].values()) < 1e-4, report


def test_two_process_run_matches_single_process(tiny_data_dir, compilation_cache, tmp_path):
    port = _free_port()
    workdir = tmp_path / "two_process"
    env = helpers.subprocess_env(compilation_cache, 2)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER_SCRIPT, str(i), str(port), tiny_data_dir, str(workdir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    # The single-process reference trains while the workers start up.
    single = tmp_path / "single"
    reference = loop.train_and_evaluate(
        helpers.tiny_config(tiny_data_dir, num_steps=2), str(single)
    )
    outputs = [w.communicate(timeout=240) for w in workers]
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-4000:]
        assert "DONE" in stdout

    config, params = checkpoint.restore_params(workdir, ema=False)
    assert config.train.parallel == "sharded"
    logged = [_losses(workdir), _losses(single)]
    assert [step for step, _ in logged[0]] == [1, 2]
    np.testing.assert_allclose(*[[loss for _, loss in rows] for rows in logged], rtol=1e-5)
    # Parameters whose gradient is exactly zero in exact arithmetic (attention key biases, the
    # root-subtracted head bias) get float noise that Adam normalises up to ~1e-6 per step, so
    # the comparison runs after the first real update (the warmup starts at learning rate 0).
    for got, want in zip(
        jax.tree.leaves(params), jax.tree.leaves(reference.state.params), strict=True
    ):
        np.testing.assert_allclose(got, want, atol=1e-5)


def _losses(workdir) -> list[tuple[int, float]]:
    with open(workdir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return [(row["step"], row["train/loss"]) for row in rows]
