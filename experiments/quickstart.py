"""The whole pipeline on the synthetic dataset, on a CPU, in minutes.

  python -m experiments.quickstart [--workdir runs/quickstart]

  1. builds synthetic_h36m (small) into WORKDIR/data
  2. trains the tiny TGT          -> WORKDIR/tgt (evaluated twice: the TGT's curves)
  3. trains the tiny GPC on it    -> WORKDIR/gpc (evaluated at its last step)
  4. prints the GPC run's evaluation: per-action P1/P2 of the TGT and the refined pose, on a
     representative subset of the test split (whole sequences, every action; --max_windows=0
     evaluates all of it), tables in WORKDIR/gpc/eval/
  5. runs inference on a test sequence -> WORKDIR/infer_result.npz
  6. writes an animation              -> WORKDIR/viz/animation.gif

A second run reuses what exists: the dataset is kept, the finished training runs end at once and
their saved evaluation tables are printed again (not recomputed); inference and the GIF are
redone. An interrupted run resumes where its last checkpoint left off.
"""

import contextlib
import dataclasses
import json
import os
import pathlib
import resource
import time
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from configs import gpc_base, infer_offline, tgt_base
from experiments import _cli
from gentg_jax import evaluation, files, inference, viz
from gentg_jax.data import h36m, pipeline, synthetic, tfds_builders
from gentg_jax.train import loop

_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Where everything is written.")
_FRAMES = flags.DEFINE_integer("frames_per_sequence", 300, "Synthetic frames per sequence.")
# 1200 steps of the 17-token TGT cost about what 800 of the joint+limb TGT did (README).
_TGT_STEPS = flags.DEFINE_integer("tgt_steps", 1200, "TGT training steps.")
_GPC_STEPS = flags.DEFINE_integer("gpc_steps", 300, "GPC training steps.")
_MAX_WINDOWS = flags.DEFINE_integer(
    "max_windows",
    360,
    "Test windows evaluated: whole sequences, round-robin over actions (360: 2 of the 8 "
    "sequences of each action); 0: the whole test split.",
)


@dataclasses.dataclass(frozen=True)
class Options:
    """Sizes of one quickstart run (the flags; tests pass smaller ones)."""

    workdir: str = "runs/quickstart"
    frames_per_sequence: int = 300
    subjects: tuple[str, ...] = h36m.SUBJECTS
    actions: tuple[str, ...] = h36m.ACTIONS
    tgt_steps: int = 1200
    gpc_steps: int = 300
    tgt_evaluations: int = 2  # evenly spaced, the last at the end (0: none)
    max_windows: int = 360
    gif_frames: int = 100


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Stages:
    """Logs `[i/6] what` at the start of each stage and keeps its wall and CPU seconds."""

    def __init__(self, total: int = 6):
        self.total, self.times = total, {}

    @contextlib.contextmanager
    def __call__(self, index: int, name: str, text: str) -> Iterator[None]:
        logging.info("[%d/%d] %s", index, self.total, text)
        wall, cpu = time.perf_counter(), _cpu_seconds()
        yield
        self.times[name] = (time.perf_counter() - wall, _cpu_seconds() - cpu)

    def summary(self) -> str:
        return ", ".join(f"{name} {wall:.0f}/{cpu:.0f}" for name, (wall, cpu) in self.times.items())


def build_data(options: Options) -> str:
    """Builds synthetic_h36m/detector into WORKDIR/data unless it is there; returns the dir."""
    data_dir = os.path.join(options.workdir, "data")
    if (pathlib.Path(data_dir) / "synthetic_h36m" / "detector").is_dir():
        logging.info("dataset: reusing %s", data_dir)
        return data_dir
    generator = dataclasses.replace(
        synthetic.SyntheticConfig(),
        subjects=options.subjects,
        actions=options.actions,
        frames_per_sequence=options.frames_per_sequence,
    )
    train = tuple(s for s in options.subjects if s not in ("S9", "S11"))
    test = tuple(s for s in options.subjects if s in ("S9", "S11"))
    tfds_builders.build_synthetic_h36m(
        data_dir,
        generator=generator,
        configs=("detector",),
        train_subjects=train,
        test_subjects=test,
    )
    return data_dir


def _shared_settings(config: ml_collections.ConfigDict, data_dir: str, options: Options) -> None:
    config.data.data_dir = data_dir
    config.eval.max_windows = options.max_windows
    config.train.parallel = "single"


def tgt_config(data_dir: str, options: Options) -> ml_collections.ConfigDict:
    config = tgt_base.get_config("tiny")
    _shared_settings(config, data_dir, options)
    steps = options.tgt_steps
    evaluations = options.tgt_evaluations
    eval_every = -(-steps // evaluations) if evaluations > 0 else 0
    config.train.update(
        num_steps=steps, log_every=max(1, steps // 20), eval_every=eval_every, checkpoint_every=0
    )
    return config


def gpc_config(data_dir: str, tgt_workdir: str, options: Options) -> ml_collections.ConfigDict:
    config = gpc_base.get_config("tiny")
    _shared_settings(config, data_dir, options)
    config.tgt_workdir = tgt_workdir
    config.train_from_gt_noise = False
    steps = options.gpc_steps
    config.train.update(
        num_steps=steps, log_every=max(1, steps // 20), eval_every=steps, checkpoint_every=0
    )
    return config


def evaluation_scope(config: ml_collections.ConfigDict) -> str:
    """What an evaluation of `config` covers, e.g. "30 of 120 test sequences (360 of 1440
    windows), 15 of 15 actions"."""
    split = pipeline.load_sequences(config.data.name, config.data.data_dir, config.eval.split)
    chosen = pipeline.select_sequences(split, config.data.num_frames, config.eval.max_windows)

    def windows(sequences) -> int:
        lengths = [len(example["keypoints_2d"]) for example in sequences]
        return len(pipeline.eval_windows(lengths, config.data.num_frames)[0])

    def actions(sequences) -> int:
        return len({str(example["action"]).split(" ")[0] for example in sequences})

    return (
        f"{len(chosen)} of {len(split)} {config.eval.split} sequences ({windows(chosen)} of "
        f"{windows(split)} windows), {actions(chosen)} of {actions(split)} actions"
    )


def write_test_sequence(data_dir: str, path: str) -> dict[str, np.ndarray]:
    """Writes the first test example as an infer input file (pixels, scores, image size)."""
    example = tfds_builders.open_split("synthetic_h36m", data_dir, "test")[0]
    arrays = {
        "keypoints": example["keypoints_2d"],
        "scores": example["scores"],
        "image_size": example["image_size"],
    }
    with files.atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    pose = np.asarray(example["pose_3d"])
    return {"ground_truth_3d": pose - pose[:, :1]}


def latest_tables(workdir: str) -> dict[str, str]:
    """Paths of the newest evaluation tables the training loop wrote into WORKDIR/eval/."""
    found = evaluation.latest_eval_json(workdir)
    return {"json": str(found), "md": str(found.with_suffix(".md"))}


def run(options: Options) -> dict[str, object]:
    """Runs every stage; returns the evaluation summary, the written paths and the stages' wall
    and CPU seconds."""
    os.makedirs(options.workdir, exist_ok=True)
    stage = _Stages()
    tgt_dir = os.path.join(options.workdir, "tgt")
    gpc_dir = os.path.join(options.workdir, "gpc")
    with stage(1, "data", f"synthetic_h36m in {os.path.join(options.workdir, 'data')}"):
        data_dir = build_data(options)
    with stage(2, "tgt", f"training the tiny TGT in {tgt_dir}"):
        loop.train_and_evaluate(tgt_config(data_dir, options), tgt_dir)
    with stage(3, "gpc", f"training the tiny GPC in {gpc_dir} (evaluated at its last step)"):
        config = gpc_config(data_dir, tgt_dir, options)
        loop.train_and_evaluate(config, gpc_dir)
    with stage(4, "tables", f"evaluation tables in {os.path.join(gpc_dir, loop.EVAL_DIR)}"):
        tables = latest_tables(gpc_dir)
        print(f"\nEvaluated on {evaluation_scope(config)}:\n")
        print(pathlib.Path(tables["md"]).read_text())
    with stage(5, "infer", "inference on a test sequence"):
        sequence_path = os.path.join(options.workdir, "test_sequence.npz")
        extras = write_test_sequence(data_dir, sequence_path)
        infer_config = infer_offline.get_config()
        infer_config.checkpoint = gpc_dir
        result_path = os.path.join(options.workdir, "infer_result.npz")
        arrays = inference.infer_file(infer_config, sequence_path, result_path)
    with stage(6, "gif", "animation"):
        gif = os.path.join(options.workdir, "viz", "animation.gif")
        written_viz = viz.animate({**arrays, **extras}, gif, max_frames=options.gif_frames)
    logging.info("stage wall/CPU seconds: %s", stage.summary())
    return {
        "summary": json.loads(pathlib.Path(tables["json"]).read_text())["summary"],
        "tables": tables,
        "infer_result": result_path,
        "animation": [str(p) for p in written_viz],
        "seconds": stage.times,
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.info("devices: %s", jax.devices())
    options = Options(
        workdir=_WORKDIR.value,
        frames_per_sequence=_FRAMES.value,
        tgt_steps=_TGT_STEPS.value,
        gpc_steps=_GPC_STEPS.value,
        max_windows=_MAX_WINDOWS.value,
    )
    outputs = run(options)
    print(f"animation: {', '.join(outputs['animation'])}\nresult: {outputs['infer_result']}")


if __name__ == "__main__":
    _cli.run(main)
