"""The shared pieces of `benchmarks.fault_injection`: the bench (a temporary directory, the
environment of the processes it starts, the uninterrupted reference run) and its cases."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTDATA = REPO / "tests" / "testdata"
STEPS, EVERY = 40, 8
TRAIN_FLAGS = [
    "--config=configs/tgt_base.py:tiny",
    "--config.data.num_frames=9",
    "--config.model.dim=32",
    "--config.model.depth=1",
    "--config.model.num_heads=2",
    "--config.model.max_frames=9",
    "--config.train.batch_size=8",
    "--config.train.micro_batch_size=0",
    f"--config.train.num_steps={STEPS}",
    "--config.train.warmup_steps=2",
    "--config.train.log_every=1",
    "--config.train.eval_every=0",
    f"--config.train.checkpoint_every={EVERY}",
    "--config.train.parallel=single",
]


@dataclasses.dataclass
class Case:
    group: str
    name: str
    survived: bool
    data_lost: bool
    unclear: bool
    detail: str
    seconds: float


class Bench:
    """The temporary directory, environment and reference run shared by the cases."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.data_dir = root / "tfds"
        self.env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            "GENTG_PROGRESS": "0",
            "PYTHONPATH": str(REPO),
        }
        self.env.pop("GENTG_DEBUG", None)
        self.reference = root / "reference"
        self.cases: list[Case] = []
        self._count = 0

    def fresh(self, name: str) -> pathlib.Path:
        self._count += 1
        return self.root / f"{self._count:02d}_{name}"

    def command(self, module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *map(str, args)]

    def train_command(self, workdir: pathlib.Path) -> list[str]:
        return self.command(
            "experiments.train_tgt",
            *TRAIN_FLAGS,
            f"--config.data.data_dir={self.data_dir}",
            f"--workdir={workdir}",
        )

    def run(self, cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, cmd: list[str], log: pathlib.Path) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            return subprocess.Popen(
                cmd,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                text=True,
            )

    def record(self, group: str, name: str, start: float, **result) -> None:
        case = Case(group, name, seconds=round(time.perf_counter() - start, 1), **result)
        self.cases.append(case)
        mark = "ok" if case.survived and not case.data_lost and not case.unclear else "FAIL"
        print(f"  [{mark}] {group}: {name} ({case.seconds} s) {case.detail}", flush=True)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
