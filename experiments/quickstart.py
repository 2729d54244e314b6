"""The whole pipeline on the synthetic dataset, on a CPU, in minutes.

  python -m experiments.quickstart [--workdir runs/quickstart]

  1. builds synthetic_h36m (small) into WORKDIR/data
  2. trains the tiny TGT          -> WORKDIR/tgt
  3. trains the tiny GPC on it    -> WORKDIR/gpc
  4. evaluates (per-action P1/P2 of TGT and refined; tables in WORKDIR/gpc/eval/)
  5. runs inference on a test sequence -> WORKDIR/infer_result.npz
  6. writes an animation              -> WORKDIR/viz/animation.gif

A second run reuses what exists: the dataset is kept, training resumes (and ends at once when
finished), evaluation, inference and the GIF are redone.
"""

import dataclasses
import json
import os
import pathlib

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from configs import gpc_base, infer_offline, tgt_base
from gentg_jax import files, inference, viz
from gentg_jax.data import h36m, synthetic, tfds_builders
from gentg_jax.train import loop

_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Where everything is written.")
_FRAMES = flags.DEFINE_integer("frames_per_sequence", 300, "Synthetic frames per sequence.")
_TGT_STEPS = flags.DEFINE_integer("tgt_steps", 1500, "TGT training steps.")
_GPC_STEPS = flags.DEFINE_integer("gpc_steps", 600, "GPC training steps.")
_MAX_WINDOWS = flags.DEFINE_integer(
    "max_windows", 0, "Test windows evaluated (whole sequences, round-robin over actions; 0: all)."
)


@dataclasses.dataclass(frozen=True)
class Options:
    """Sizes of one quickstart run (the flags; tests pass smaller ones)."""

    workdir: str = "runs/quickstart"
    frames_per_sequence: int = 300
    subjects: tuple[str, ...] = h36m.SUBJECTS
    actions: tuple[str, ...] = h36m.ACTIONS
    tgt_steps: int = 1500
    gpc_steps: int = 600
    max_windows: int = 0
    gif_frames: int = 100


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
    # Evaluated once, at the end of the GPC run, whose tables hold the TGT's numbers too.
    config.train.update(
        num_steps=steps, log_every=max(1, steps // 10), eval_every=0, checkpoint_every=steps
    )
    return config


def gpc_config(data_dir: str, tgt_workdir: str, options: Options) -> ml_collections.ConfigDict:
    config = gpc_base.get_config("tiny")
    _shared_settings(config, data_dir, options)
    config.tgt_workdir = tgt_workdir
    config.train_from_gt_noise = False
    steps = options.gpc_steps
    config.train.update(
        num_steps=steps, log_every=max(1, steps // 10), eval_every=steps, checkpoint_every=steps
    )
    return config


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
    found = sorted(pathlib.Path(workdir, loop.EVAL_DIR).glob("step_*.json"))
    if not found:
        raise FileNotFoundError(f"no evaluation tables in {workdir}/{loop.EVAL_DIR}")
    return {"json": str(found[-1]), "md": str(found[-1].with_suffix(".md"))}


def run(options: Options) -> dict[str, object]:
    """Runs every stage; returns the evaluation summary and the written paths."""
    os.makedirs(options.workdir, exist_ok=True)
    data_dir = build_data(options)
    tgt_dir = os.path.join(options.workdir, "tgt")
    gpc_dir = os.path.join(options.workdir, "gpc")
    logging.info("[2/6] training the tiny TGT in %s", tgt_dir)
    loop.train_and_evaluate(tgt_config(data_dir, options), tgt_dir)
    logging.info("[3/6] training the tiny GPC in %s (evaluated at its last step)", gpc_dir)
    loop.train_and_evaluate(gpc_config(data_dir, tgt_dir, options), gpc_dir)
    logging.info("[4/6] evaluation tables in %s", os.path.join(gpc_dir, loop.EVAL_DIR))
    tables = latest_tables(gpc_dir)
    print(pathlib.Path(tables["md"]).read_text())
    logging.info("[5/6] inference on a test sequence")
    sequence_path = os.path.join(options.workdir, "test_sequence.npz")
    extras = write_test_sequence(data_dir, sequence_path)
    infer_config = infer_offline.get_config()
    infer_config.checkpoint = gpc_dir
    result_path = os.path.join(options.workdir, "infer_result.npz")
    arrays = inference.infer_file(infer_config, sequence_path, result_path)
    logging.info("[6/6] animation")
    gif = os.path.join(options.workdir, "viz", "animation.gif")
    written_viz = viz.animate({**arrays, **extras}, gif, max_frames=options.gif_frames)
    return {
        "summary": json.loads(pathlib.Path(tables["json"]).read_text())["summary"],
        "tables": tables,
        "infer_result": result_path,
        "animation": [str(p) for p in written_viz],
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
    logging.info("done: %s", outputs)
    print(f"animation: {outputs['animation']}\nresult: {outputs['infer_result']}")


if __name__ == "__main__":
    app.run(main)
