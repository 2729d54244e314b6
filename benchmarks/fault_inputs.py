"""Bad-input cases of `benchmarks.fault_injection`: files and arguments that the converter,
`Predictor.predict` and `experiments.infer` must refuse with one clear line, writing nothing."""

from __future__ import annotations

import os
import pathlib
import time

import numpy as np

from benchmarks.fault_bench import TESTDATA, Bench, last_line


class _RunsCode:
    def __init__(self, marker: pathlib.Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _load(path: pathlib.Path, key: str):
    # The project's own test fixtures: trusted, so numpy's pickle loading is fine here.
    return np.load(path, allow_pickle=True)[key].item()


def _converter_inputs(directory: pathlib.Path, marker: pathlib.Path) -> dict:
    """{case: (extra flags, words its message must hold)} with the files written."""
    p3d, p2d = TESTDATA / "data_3d_h36m.npz", TESTDATA / "data_2d_h36m_gt.npz"

    def write_2d(name, edit):
        views = _load(p2d, "positions_2d")
        edit(views)
        path = directory / name / "data_2d_h36m_gt.npz"
        path.parent.mkdir(parents=True)
        np.savez(path, positions_2d=views)
        return path

    def scores(views):
        v = views["S1"]["Playground"][0]
        views["S1"]["Playground"][0] = np.concatenate([v, np.full((*v.shape[:2], 1), 1e6)], -1)

    crafted_3d = directory / "crafted" / "data_3d_h36m.npz"
    crafted_3d.parent.mkdir(parents=True)
    np.savez(crafted_3d, positions_3d={"S1": {"Playground": _RunsCode(marker)}})
    not_npz = directory / "data_2d_h36m_text.npz"
    not_npz.write_text("not a zip")
    a_file = directory / "a_file"
    a_file.write_text("")
    double = write_2d(
        "long",
        lambda v: v["S5"].__setitem__(
            "Walking", [np.concatenate([x, x]) for x in v["S5"]["Walking"]]
        ),
    )
    return {
        "scores outside [0, 1]": (
            [p3d, write_2d("scores", scores)],
            [],
            ["'S1'", "'Playground'", "camera 54138969", "[0, 1]"],
        ),
        "coordinates of 1e30": (
            [p3d, write_2d("far", lambda v: v["S9"]["Hop"][2].__setitem__((7, 4, 0), 1e30))],
            [],
            ["'S9'", "'Hop'", "camera 58860488", "not pixels"],
        ),
        "2D twice as long as the 3D": ([p3d, double], [], ["'S5'", "'Walking'", "--allow_trim"]),
        "cameras of unequal length": (
            [
                p3d,
                write_2d(
                    "unequal",
                    lambda v: v["S5"]["Walking"].__setitem__(
                        3, np.concatenate([v["S5"]["Walking"][3]] * 2)
                    ),
                ),
            ],
            [],
            ["'S5'", "'Walking'", "[414, 414, 414, 828] frames"],
        ),
        "subject typo in --train_subjects": (
            [p3d, p2d],
            ["--train_subjects=S1,S10"],
            ["['S10']", "--train_subjects"],
        ),
        "--data_dir is a file": ([p3d, p2d], [f"--data_dir={a_file}"], [str(a_file), "is a file"]),
        "crafted pickle (code in positions_3d)": (
            [crafted_3d, p2d],
            [],
            ["'positions_3d'", "refused"],
        ),
        "not an npz file": ([p3d, not_npz], [], ["not an npz file"]),
    }


def converter_cases(bench: Bench) -> None:
    directory = bench.fresh("converter")
    directory.mkdir()
    marker = directory / "marker"
    for name, ((data_3d, data_2d), flags, words) in _converter_inputs(directory, marker).items():
        start = time.perf_counter()
        out = directory / "tfds"
        flags = flags or [f"--data_dir={out}"]
        result = bench.run(
            bench.command(
                "data_prep.convert_h36m", f"--data_3d={data_3d}", f"--data_2d={data_2d}", *flags
            )
        )
        line = last_line(result.stderr)
        named = [str(data_3d), str(data_2d)]
        clear = line.startswith("convert_h36m: ") and all(w in line for w in words)
        clear &= any(n in line for n in named) or name == "--data_dir is a file"
        written = out.exists() or marker.exists()
        bench.record(
            "bad converter input",
            name,
            start,
            survived=result.returncode == 1 and not written,
            data_lost=False,
            unclear="Traceback" in result.stderr or not clear,
            detail=f"rc={result.returncode}: {line[:150]}",
        )


def predict_cases(bench: Bench) -> None:
    from gentg_jax import inference

    predictor = inference.load_predictor(bench.reference)
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(300, 700, (30, 17, 2)).astype(np.float32)
    scores = rng.uniform(0.2, 1.0, (30, 17)).astype(np.float32)
    size = (1000, 1002)
    nan, far = keypoints.copy(), keypoints.copy()
    nan[3, 5] = np.nan
    far[4, 2, 0] = 1e30
    cases = {
        "scores of 1e6": (dict(scores=scores * 1e6), ["scores", "[0, 1]"]),
        "coordinates of 1e30": (dict(keypoints_2d=far), ["keypoints_2d", "x=1e+30", "frame 4"]),
        "NaN joints without scores": (
            dict(keypoints_2d=nan, scores=None),
            ["non-finite", "scores"],
        ),
        "image_size 0": (dict(image_size=(0, 1002)), ["image_size"]),
        "18 joints": (dict(keypoints_2d=np.zeros((30, 18, 2))), ["17 joints"]),
    }
    for name, (change, words) in cases.items():
        start = time.perf_counter()
        args = {"keypoints_2d": keypoints, "scores": scores, "image_size": size, **change}
        try:
            out = predictor.predict(**args)
            message, survived = (
                f"accepted: finite output {np.isfinite(out['coarse_3d']).all()}",
                False,
            )
        except ValueError as error:
            message, survived = str(error), True
        clear = survived and all(w in message for w in words) and "\n" not in message
        bench.record(
            "bad predict input",
            name,
            start,
            survived=survived,
            data_lost=False,
            unclear=not clear,
            detail=message[:150],
        )


def infer_cases(bench: Bench) -> None:
    directory = bench.fresh("infer")
    directory.mkdir()
    marker = directory / "marker"
    rng = np.random.default_rng(1)
    keypoints = rng.uniform(300, 700, (30, 17, 2)).astype(np.float32)
    far = keypoints.copy()
    far[4, 2, 0] = 1e30
    files = {
        "npz without image_size": (
            dict(keypoints=keypoints),
            ["image_size", "--config.image_size"],
        ),
        "scores of 1e6": (
            dict(
                keypoints=keypoints,
                scores=np.full((30, 17), 1e6),
                image_size=np.array([1000, 1002]),
            ),
            ["scores", "[0, 1]"],
        ),
        "coordinates of 1e30": (
            dict(keypoints=far, image_size=np.array([1000, 1002])),
            ["keypoints_2d", "x=1e+30", "frame 4"],
        ),
        "crafted VideoPose3D custom file": (
            dict(positions_2d={"clip": {"custom": [_RunsCode(marker)]}}),
            ["'positions_2d'", "refused"],
        ),
    }
    for name, (arrays, words) in files.items():
        path = directory / f"{len(os.listdir(directory))}.npz"
        np.savez(path, **arrays)
        files[name] = (
            path,
            words + ([str(path)] if "image_size" in words or "crafted" in name else []),
        )
    pickled = directory / "seq.npy"
    np.save(pickled, np.array([_RunsCode(marker)], dtype=object), allow_pickle=True)
    files["a pickled .npy instead of an npz"] = (pickled, [str(pickled), "not an npz file"])
    files["missing input file"] = (directory / "nothing.npz", ["nothing.npz"])
    for name, (path, words) in files.items():
        start = time.perf_counter()
        output = directory / f"out_{len(os.listdir(directory))}.npz"
        result = bench.run(
            bench.command(
                "experiments.infer",
                "--config=configs/infer_offline.py",
                f"--config.checkpoint={bench.reference}",
                f"--input={path}",
                f"--output={output}",
            )
        )
        line = last_line(result.stderr)
        clear = line.startswith("infer: ") and all(w in line for w in words)
        bench.record(
            "bad infer input",
            name,
            start,
            survived=result.returncode == 1 and not output.exists() and not marker.exists(),
            data_lost=False,
            unclear="Traceback" in result.stderr or not clear,
            detail=f"rc={result.returncode}: {line[:150]}",
        )
