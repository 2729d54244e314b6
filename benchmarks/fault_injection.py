"""Fault injection: kill -9, damaged checkpoints, two writers and bad inputs, against the
guarantees of the README's "Reliability" section.

  python -m benchmarks.fault_injection [--json benchmarks/results/fault_injection.json]

Builds a tiny synthetic dataset, trains a tiny TGT once without interruption (the reference)
and then, each in fresh processes as a user would run them:

  kill -9      training killed at start-up, between checkpoints, while a checkpoint is being
               written, right after one is committed, during the final save, and twice in a
               row; the same command then resumes (taking over the dead run's lock)
  damage       the latest step truncated, emptied, without state/_METADATA, with an emptied
               iterator state, with a flipped bit, truncated without a checksum; every step
               damaged
  writers      two identical runs started together; a second run started during a run; a run
               and an evaluation refused while a live process holds the lock, then that holder
               killed -9 and its stale lock taken over
  converter    bad files and flags for data_prep.convert_h36m
  predict      bad arguments for Predictor.predict
  infer        bad input files for experiments.infer

and prints a table: cases tried, survived, data lost and unclear errors. A case survives when
the run ends with exactly the reference's parameters (all of the TrainState, bit for bit) and
metrics.jsonl rows (one per step, same losses), or when bad input is refused with exit status 1
and nothing written. Data lost: a resumed or surviving run whose state or metrics differ from
the reference, or checkpoints destroyed. Unclear: a traceback, or a refusal whose one line does
not name what is wrong. Writes the cases as JSON (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from benchmarks.fault_bench import REPO, STEPS, Bench, Case, last_line
from benchmarks.fault_inputs import converter_cases, infer_cases, predict_cases

# ---------------------------------------------------------------------------------------------
# Comparing runs


def final_state(workdir: pathlib.Path) -> dict:
    from gentg_jax import checkpoint

    manager = checkpoint.CheckpointManager(workdir / "checkpoints", read_only=True)
    _, state = manager.restore_raw(manager.latest_step())
    return state


def metric_rows(workdir: pathlib.Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    return [(row["step"], row.get("train/loss")) for row in rows]


def compare(workdir: pathlib.Path, reference: pathlib.Path) -> str:
    """'' when the final TrainState and the metrics rows equal the reference's, else what
    differs."""
    import jax

    try:
        got, want = final_state(workdir), final_state(reference)
    except Exception as error:  # noqa: BLE001 - any failure to read is a loss
        return f"cannot read the final state: {type(error).__name__}: {error}"
    leaves = zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=False)
    if jax.tree.structure(got) != jax.tree.structure(want) or not all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in leaves
    ):
        return "final state differs from the uninterrupted run"
    if metric_rows(workdir) != metric_rows(reference):
        steps = [s for s, _ in metric_rows(workdir)]
        return f"metrics.jsonl differs (steps {steps[:5]}...{steps[-3:]}, {len(steps)} rows)"
    return ""


# ---------------------------------------------------------------------------------------------
# kill -9


def _tmp_of(step: int) -> Callable[[pathlib.Path], bool]:
    return lambda w: any((w / "checkpoints").glob(f"{step}.orbax-checkpoint-tmp*"))


def _rows_at_least(n: int) -> Callable[[pathlib.Path], bool]:
    def reached(w: pathlib.Path) -> bool:
        try:
            return sum(1 for _ in open(w / "metrics.jsonl")) >= n
        except FileNotFoundError:
            return False

    return reached


def _lock_for(seconds: float) -> Callable[[pathlib.Path], bool]:
    seen: list[float] = []

    def reached(w: pathlib.Path) -> bool:
        if (w / "writer.lock").exists() and not seen:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= seconds

    return reached


KILL_POINTS = {
    "at start-up (lock taken, compiling)": [_lock_for(0.5)],
    "between checkpoints (step 13)": [_rows_at_least(13)],
    "while checkpoint 16 is written": [_tmp_of(16)],
    "right after checkpoint 24 is committed": [lambda w: (w / "checkpoints" / "24").is_dir()],
    "during the final save (step 40)": [_tmp_of(STEPS)],
    "twice: checkpoint 8 written, then step 30": [_tmp_of(8), _rows_at_least(30)],
}


def kill_when(process: subprocess.Popen, workdir: pathlib.Path, condition, timeout=300) -> bool:
    """SIGKILLs the process group once `condition(workdir)` holds; False if it ended first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if condition(workdir):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait()
    return False


def kill_cases(bench: Bench) -> None:
    for name, conditions in KILL_POINTS.items():
        start = time.perf_counter()
        workdir = bench.fresh("kill")
        injected = []
        for index, condition in enumerate(conditions):
            process = bench.start(
                bench.train_command(workdir), workdir.parent / f"{workdir.name}_{index}.log"
            )
            injected.append(kill_when(process, workdir, condition))
        resumed = bench.run(bench.train_command(workdir))
        lost = compare(workdir, bench.reference) if resumed.returncode == 0 else "resume failed"
        took_over = "took over the lock" in resumed.stderr
        unclear = "Traceback" in resumed.stderr or not took_over
        detail = "killed" if all(injected) else f"kill point missed ({injected})"
        detail += f"; resume rc={resumed.returncode}; " + (lost or "identical to uninterrupted")
        detail += "" if took_over else "; no stale-lock takeover logged"
        survived = resumed.returncode == 0 and not lost and all(injected)
        bench.record(
            "kill -9 during training",
            name,
            start,
            survived=survived,
            data_lost=bool(lost),
            unclear=unclear,
            detail=detail,
        )


# ---------------------------------------------------------------------------------------------
# Checkpoint damage


def _largest(step: pathlib.Path) -> pathlib.Path:
    return max((step / "state").rglob("d/*"), key=lambda p: p.stat().st_size)


def _flip(path: pathlib.Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))


def _empty(step: pathlib.Path) -> None:
    for child in list(step.iterdir()):
        shutil.rmtree(child) if child.is_dir() else child.unlink()


DAMAGES = {
    "latest step truncated": lambda s: _largest(s).write_bytes(_largest(s).read_bytes()[:100]),
    "latest step emptied": _empty,
    "latest state/_METADATA missing": lambda s: (s / "state" / "_METADATA").unlink(),
    "latest iterator state emptied": lambda s: (s / "data" / "metadata").write_text(""),
    "latest step bit-flipped": lambda s: _flip(_largest(s)),
    "latest step truncated, no checksum (older save)": lambda s: (
        (s / "checksum.json").unlink(),
        [p.write_bytes(p.read_bytes()[:10]) for p in (s / "state").rglob("d/*")],
    ),
}


def damage_cases(bench: Bench) -> None:
    latest = str(STEPS)
    for name, damage in DAMAGES.items():
        start = time.perf_counter()
        workdir = bench.fresh("damage")
        shutil.copytree(bench.reference, workdir)
        damage(workdir / "checkpoints" / latest)
        resumed = bench.run(bench.train_command(workdir))
        lost = compare(workdir, bench.reference) if resumed.returncode == 0 else "resume failed"
        warned = f"skipped damaged checkpoint {workdir / 'checkpoints' / latest}" in resumed.stderr
        unclear = "Traceback" in resumed.stderr or not warned
        detail = f"rc={resumed.returncode}; " + (lost or "fell back, identical to the reference")
        detail += "" if warned else "; no warning naming the skipped step"
        bench.record(
            "damaged checkpoint",
            name,
            start,
            survived=resumed.returncode == 0 and not lost,
            data_lost=bool(lost),
            unclear=unclear,
            detail=detail,
        )

    start = time.perf_counter()
    workdir = bench.fresh("damage_all")
    shutil.copytree(bench.reference, workdir)
    steps = sorted(p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    for step in steps:
        _flip(_largest(step))
    before = {p: p.stat().st_size for p in (workdir / "checkpoints").rglob("*") if p.is_file()}
    refused = bench.run(bench.train_command(workdir))
    line = last_line(refused.stderr)
    after = {p: p.stat().st_size for p in (workdir / "checkpoints").rglob("*") if p.is_file()}
    clear = line.startswith("train_tgt: no intact checkpoint in") and all(
        f"step {s.name}:" in line for s in steps
    )
    bench.record(
        "damaged checkpoint",
        "every step bit-flipped (refused)",
        start,
        survived=refused.returncode == 1 and clear,
        data_lost=before != after,
        unclear="Traceback" in refused.stderr or not clear,
        detail=f"rc={refused.returncode}: {line[:160]}",
    )


# ---------------------------------------------------------------------------------------------
# Two writers


def writer_cases(bench: Bench) -> None:
    start = time.perf_counter()
    workdir = bench.fresh("together")
    logs = [workdir.parent / f"{workdir.name}_{i}.log" for i in (0, 1)]
    runs = [bench.start(bench.train_command(workdir), log) for log in logs]
    codes = [run.wait() for run in runs]
    outputs = [log.read_text() for log in logs]
    refused = [i for i, code in enumerate(codes) if code == 1]
    lost = compare(workdir, bench.reference) if sorted(codes) == [0, 1] else f"exit codes {codes}"
    line = last_line(outputs[refused[0]]) if refused else ""
    other = runs[1 - refused[0]].pid if refused else None
    clear = "is locked: another run writes to it" in line and f"pid {other}," in line
    bench.record(
        "two writers",
        "two identical runs started together",
        start,
        survived=not lost and clear,
        data_lost=bool(lost),
        unclear=any("Traceback" in o for o in outputs) or not clear,
        detail=f"exit codes {codes}; {line[:140]}",
    )

    start = time.perf_counter()
    workdir = bench.fresh("second")
    first = bench.start(bench.train_command(workdir), workdir.parent / f"{workdir.name}.log")
    while not (workdir / "writer.lock").exists() and first.poll() is None:
        time.sleep(0.01)
    second = bench.run(bench.train_command(workdir))
    first.wait()
    line = last_line(second.stderr)
    lost = compare(workdir, bench.reference) if first.returncode == 0 else "first run failed"
    clear = f"pid {first.pid}," in line and "since" in line
    bench.record(
        "two writers",
        "second run started during a run",
        start,
        survived=second.returncode == 1 and not lost and clear,
        data_lost=bool(lost),
        unclear="Traceback" in second.stderr or not clear,
        detail=line[:160],
    )

    start = time.perf_counter()
    workdir = bench.fresh("held")
    holder = bench.start(
        [
            sys.executable,
            "-c",
            "import sys, time; from gentg_jax import workdir_lock; "
            "workdir_lock.WorkdirLock(sys.argv[1], 'a notebook').acquire(); "
            "print('held', flush=True); "
            "time.sleep(600)",
            str(workdir),
        ],
        workdir.parent / f"{workdir.name}_holder.log",
    )
    while not (workdir / "writer.lock").exists():
        time.sleep(0.01)
    train = bench.run(bench.train_command(workdir))
    evaluate = bench.run(bench.command("experiments.evaluate", f"--workdir={workdir}"))
    refusals = [last_line(train.stderr), last_line(evaluate.stderr)]
    clear = all(f"pid {holder.pid}," in r and "a notebook" in r for r in refusals)
    untouched = sorted(p.name for p in workdir.iterdir()) == ["writer.lock"]
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    resumed = bench.run(bench.train_command(workdir))
    lost = compare(workdir, bench.reference) if resumed.returncode == 0 else "run failed"
    took_over = "took over the lock" in resumed.stderr
    bench.record(
        "two writers",
        "training and evaluation refused while held; holder killed -9, lock taken over",
        start,
        survived=[train.returncode, evaluate.returncode] == [1, 1]
        and untouched
        and not lost
        and took_over,
        data_lost=bool(lost) or not untouched,
        unclear=any("Traceback" in r.stderr for r in (train, evaluate, resumed)) or not clear,
        detail=refusals[0][:160],
    )


# ---------------------------------------------------------------------------------------------


def table(cases: list[Case]) -> str:
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group, []).append(case)
    rows = ["| cases | tried | survived | data lost | unclear errors |", "|---|---|---|---|---|"]
    for group, members in [*groups.items(), ("total", cases)]:
        survived = sum(c.survived for c in members)
        lost = sum(c.data_lost for c in members)
        unclear = sum(c.unclear for c in members)
        rows.append(f"| {group} | {len(members)} | {survived} | {lost} | {unclear} |")
    return "\n".join(rows)


def setup(bench: Bench) -> None:
    data = bench.run(
        bench.command(
            "data_prep.make_synthetic",
            f"--data_dir={bench.data_dir}",
            "--frames_per_sequence=60",
            "--subjects=S1,S9",
            "--actions=Directions,Walking",
            "--configs=detector",
            "--train_subjects=S1",
            "--test_subjects=S9",
        )
    )
    if data.returncode:
        raise SystemExit(f"fault_injection: building the dataset failed:\n{data.stderr[-2000:]}")
    reference = bench.run(bench.train_command(bench.reference))
    if reference.returncode:
        raise SystemExit(f"fault_injection: the reference run failed:\n{reference.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--json", default=str(REPO / "benchmarks" / "results" / "fault_injection.json")
    )
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory.")
    args = parser.parse_args(argv)
    root = pathlib.Path(tempfile.mkdtemp(prefix="fault_injection_"))
    bench = Bench(root)
    started = time.perf_counter()
    try:
        print(f"reference run and dataset in {root}", flush=True)
        setup(bench)
        for group in (
            kill_cases,
            damage_cases,
            writer_cases,
            converter_cases,
            predict_cases,
            infer_cases,
        ):
            group(bench)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    summary = table(bench.cases)
    print(summary)
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "seconds": round(time.perf_counter() - started, 1),
        "table": summary,
        "cases": [dataclasses.asdict(c) for c in bench.cases],
    }
    from gentg_jax import files as files_lib

    files_lib.write_json(args.json, result)
    print(f"wrote {args.json} ({result['seconds']} s)")
    return result


if __name__ == "__main__":
    main()
