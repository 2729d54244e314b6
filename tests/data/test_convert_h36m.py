"""Tests for the Human3.6M converter (gentg_jax/data/videopose3d.py, data_prep/convert_h36m.py and
`tfds_builders.build_h36m_lifting`) on the real-motion fixtures in tests/testdata/."""

import os
import pathlib
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import numpy.lib.format as npy_format
import pytest

from gentg_jax import camera
from gentg_jax.data import h36m, tfds_builders, videopose3d
from tests import helpers

ROOT = helpers.REPO
DATA = helpers.TESTDATA
DATA_3D, GT_2D, NOISY_2D = (
    DATA / "data_3d_h36m.npz",
    DATA / "data_2d_h36m_gt.npz",
    DATA / "data_2d_h36m_noisy.npz",
)
FRAMES = {("S1", "Playground"): 1146, ("S5", "Walking"): 414, ("S9", "Hop"): 459}


def _load(path, key):
    return np.load(path, allow_pickle=True)[key].item()


def _read_all(name, data_dir, split):
    source = tfds_builders.open_split(name, data_dir, split)
    return [source[i] for i in range(len(source))]


def _finished_datasets(data_dir: pathlib.Path) -> list[pathlib.Path]:
    """dataset_info.json files outside the hidden staging directories."""
    return [
        path
        for path in data_dir.rglob("dataset_info.json")
        if not any(part.startswith(".") for part in path.relative_to(data_dir).parts)
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds_builders.build_h36m_lifting(DATA_3D, [GT_2D, NOISY_2D], data_dir)
    return data_dir


def _rotation_matrix(q):
    """Camera-to-world rotation matrix of a (w, x, y, z) unit quaternion (textbook formula)."""
    w, x, y, z = (float(v) for v in q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


@pytest.mark.parametrize("source", ["gt", "noisy"])
def test_counts_shapes_and_order(built, source):
    train = _read_all(f"h36m_lifting/{source}", built, "train")
    test = _read_all(f"h36m_lifting/{source}", built, "test")
    assert len(train) == 2 * 4 and len(test) == 1 * 4  # sequences x cameras
    keys = [(ex["subject"], ex["action"], ex["camera"]) for ex in train + test]
    expected = [(s, a, c) for (s, a) in sorted(FRAMES) for c in h36m.CAMERA_IDS]
    assert keys == expected
    for ex in train + test:
        frames = FRAMES[ex["subject"], ex["action"]]
        assert (
            ex["keypoints_2d"].shape == (frames, 17, 2) and ex["keypoints_2d"].dtype == np.float32
        )
        assert ex["scores"].shape == (frames, 17) and ex["scores"].dtype == np.float32
        assert ex["pose_3d"].shape == (frames, 17, 3) and ex["pose_3d"].dtype == np.float32
        cam = h36m.camera(ex["subject"], h36m.CAMERA_IDS.index(ex["camera"]))
        np.testing.assert_array_equal(ex["intrinsics"], cam.intrinsic)
        assert ex["image_size"].dtype == np.int32
        assert tuple(ex["image_size"]) == (cam.res_w, cam.res_h)


def test_pose_is_in_camera_frame_and_reprojects(built):
    world = _load(DATA_3D, "positions_3d")
    for ex in _read_all("h36m_lifting/gt", built, "train") + _read_all(
        "h36m_lifting/gt", built, "test"
    ):
        cam = h36m.camera(ex["subject"], h36m.CAMERA_IDS.index(ex["camera"]))
        rotation = _rotation_matrix(cam.orientation)
        expected = (world[ex["subject"]][ex["action"]] - cam.translation) @ rotation
        np.testing.assert_allclose(ex["pose_3d"], expected, atol=1e-5)
        assert ex["pose_3d"][..., 2].min() > 1.0  # in front of the camera, metres
        w, h = ex["image_size"]
        pixels = camera.image_coordinates(
            camera.project_to_2d(ex["pose_3d"], ex["intrinsics"]), w, h
        )
        assert np.abs(pixels - ex["keypoints_2d"]).max() < 0.01


@pytest.mark.parametrize("source, path", [("gt", GT_2D), ("noisy", NOISY_2D)])
def test_2d_is_trimmed_and_scores_come_from_the_third_channel(built, source, path):
    raw = _load(path, "positions_2d")
    assert raw["S1"]["Playground"][0].shape[0] == FRAMES["S1", "Playground"] + 3
    for ex in _read_all(f"h36m_lifting/{source}", built, "train"):
        views = raw[ex["subject"]][ex["action"]][h36m.CAMERA_IDS.index(ex["camera"])]
        views = views[: FRAMES[ex["subject"], ex["action"]]]
        np.testing.assert_array_equal(ex["keypoints_2d"], views[..., :2])
        if source == "noisy":
            np.testing.assert_array_equal(ex["scores"], views[..., 2])
            assert ex["scores"].min() < 0.5 < ex["scores"].max() <= 1.0
        else:
            np.testing.assert_array_equal(ex["scores"], 1.0)


def test_32_joint_file_gives_the_same_dataset(built, tmp_path):
    rng = np.random.default_rng(0)
    positions_32 = {}
    for subject, actions in _load(DATA_3D, "positions_3d").items():
        for action, poses in actions.items():
            full = rng.normal(0, 1, (len(poses), 32, 3)).astype(np.float32)
            full[:, videopose3d.KEPT_JOINTS_32] = poses
            positions_32.setdefault(subject, {})[action] = full
    path_32 = tmp_path / "data_3d_h36m.npz"
    np.savez(path_32, positions_3d=positions_32)
    tfds_builders.build_h36m_lifting(path_32, [GT_2D], tmp_path / "tfds")
    for split in tfds_builders.SPLITS:
        ours = _read_all("h36m_lifting/gt", tmp_path / "tfds", split)
        reference = _read_all("h36m_lifting/gt", built, split)
        assert len(ours) == len(reference)
        for a, b in zip(ours, reference, strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_custom_splits(tmp_path):
    tfds_builders.build_h36m_lifting(
        DATA_3D, [GT_2D], tmp_path, train_subjects=["S5"], test_subjects=["S1", "S9"]
    )
    train = _read_all("h36m_lifting/gt", tmp_path, "train")
    test = _read_all("h36m_lifting/gt", tmp_path, "test")
    assert {ex["subject"] for ex in train} == {"S5"} and len(train) == 4
    assert {ex["subject"] for ex in test} == {"S1", "S9"} and len(test) == 8


def test_split_errors(tmp_path):
    with pytest.raises(ValueError, match="both the train and the test"):
        tfds_builders.build_h36m_lifting(
            DATA_3D, [GT_2D], tmp_path, train_subjects=["S1"], test_subjects=["S1"]
        )
    with pytest.raises(ValueError, match="no data for any test subject"):
        tfds_builders.build_h36m_lifting(
            DATA_3D, [GT_2D], tmp_path, train_subjects=["S1"], test_subjects=["S11"]
        )
    with pytest.raises(ValueError, match="data_2d_h36m_<source>.npz"):
        tfds_builders.build_h36m_lifting(DATA_3D, [DATA_3D], tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def _corrupt(tmp_path, which, edit):
    """Copies the 3D file (which="3d") or the gt 2D file (which="2d") with `edit` applied."""
    key, source = ("positions_3d", DATA_3D) if which == "3d" else ("positions_2d", GT_2D)
    content = _load(source, key)
    edit(content)
    path = tmp_path / source.name
    np.savez(path, **{key: content})
    return path


def _set(container, key, value):
    container[key] = value


# (which file, how it is broken, words the message must contain besides the file name).
BAD_INPUTS = {
    "3d_wrong_joint_count": (
        "3d",
        lambda p: _set(p["S5"], "Walking", p["S5"]["Walking"][:, :16]),
        ["'S5'", "'Walking'", "joint count"],
    ),
    "3d_nan": (
        "3d",
        lambda p: p["S9"]["Hop"].__setitem__((10, 3, 1), np.nan),
        ["'S9'", "'Hop'", "NaN"],
    ),
    "3d_subject_without_cameras": (
        "3d",
        lambda p: _set(p, "S2", p.pop("S5")),
        ["'S2'", "no camera parameters"],
    ),
    "2d_missing_action": (
        "2d",
        lambda p: p["S5"].pop("Walking"),
        ["'S5'", "'Walking'", "missing key"],
    ),
    "2d_missing_subject": (
        "2d",
        lambda p: p.pop("S9"),
        ["'S9'", "'Hop'", "missing key"],
    ),
    "2d_missing_camera": (
        "2d",
        lambda p: p["S9"]["Hop"].pop(),
        ["'S9'", "'Hop'", "camera 60457274", "missing"],
    ),
    "2d_wrong_joint_count": (
        "2d",
        lambda p: _set(p["S1"]["Playground"], 2, p["S1"]["Playground"][2][:, :15]),
        ["'S1'", "'Playground'", "camera 58860488", "joint count"],
    ),
    "2d_shorter_than_3d": (
        "2d",
        lambda p: _set(p["S5"]["Walking"], 1, p["S5"]["Walking"][1][:400]),
        ["'S5'", "'Walking'", "camera 55011271", "shorter"],
    ),
    "2d_inf": (
        "2d",
        lambda p: p["S1"]["Playground"][3].__setitem__((5, 0, 0), np.inf),
        ["'S1'", "'Playground'", "camera 60457274", "inf"],
    ),
    "2d_scores_outside_0_1": (
        "2d",
        lambda p: _set(p["S1"]["Playground"], 0, _with_scores(p["S1"]["Playground"][0], 1.5)),
        ["'S1'", "'Playground'", "camera 54138969", "[0, 1]", "1.5"],
    ),
    "2d_not_pixels": (
        "2d",
        lambda p: p["S9"]["Hop"][2].__setitem__((7, 4, 0), 1e30),
        ["'S9'", "'Hop'", "camera 58860488", "frame 7, joint 4", "not pixels"],
    ),
    "2d_twice_as_long": (
        "2d",
        lambda p: p["S5"].__setitem__(
            "Walking", [np.concatenate([v, v]) for v in p["S5"]["Walking"]]
        ),
        ["'S5'", "'Walking'", "[828, 828, 828, 828] frames", "414", "--allow_trim"],
    ),
    "2d_cameras_of_unequal_length": (
        "2d",
        lambda p: _set(p["S5"]["Walking"], 3, np.concatenate([p["S5"]["Walking"][3]] * 2)),
        ["'S5'", "'Walking'", "[414, 414, 414, 828] frames", "--allow_trim"],
    ),
    "3d_millimetres": (
        "3d",
        lambda p: _set(p["S1"], "Playground", p["S1"]["Playground"] * 1000.0),
        ["'S1'", "'Playground'", "not metres"],
    ),
}


def _with_scores(views, value):
    return np.concatenate([views, np.full(views.shape[:2] + (1,), value, views.dtype)], -1)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_file_subject_action_camera(tmp_path, case):
    which, edit, words = BAD_INPUTS[case]
    (tmp_path / "in").mkdir()
    bad = _corrupt(tmp_path / "in", which, edit)
    data_3d, data_2d = (bad, GT_2D) if which == "3d" else (DATA_3D, bad)
    # Subjects named explicitly must be in the 3D file (S2 is, when S5 was renamed to it).
    present = _load(data_3d, "positions_3d")
    train = [subject for subject in ("S1", "S2", "S5") if subject in present]
    subjects = {"train_subjects": train, "test_subjects": ["S9"]}
    # The bad file comes second, so a build that wrote before validating would leave `noisy`.
    inputs = [NOISY_2D, data_2d] if which == "2d" else [NOISY_2D]
    with pytest.raises(ValueError) as error:
        tfds_builders.build_h36m_lifting(data_3d, inputs, tmp_path / "tfds", **subjects)
    for word in [str(bad), *words]:
        assert word in str(error.value)
    assert not (tmp_path / "tfds").exists()


def test_nan_in_trimmed_2d_tail_is_fine(tmp_path):
    path = _corrupt(tmp_path, "2d", lambda p: p["S1"]["Playground"][0].__setitem__(1147, np.nan))
    tfds_builders.build_h36m_lifting(DATA_3D, [path], tmp_path / "tfds")
    assert len(tfds_builders.open_split("h36m_lifting/gt", tmp_path / "tfds", "train")) == 8


def test_not_an_npz_and_missing_file(tmp_path):
    text = tmp_path / "data_2d_h36m_gt.npz"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match=f"{text}: not an npz file"):
        tfds_builders.build_h36m_lifting(DATA_3D, [text], tmp_path / "tfds")
    with pytest.raises(ValueError, match="not an npz file"):
        tfds_builders.build_h36m_lifting(DATA / "README.md", [GT_2D], tmp_path / "tfds")
    with pytest.raises(ValueError, match="missing key 'positions_3d'"):
        tfds_builders.build_h36m_lifting(GT_2D, [GT_2D], tmp_path / "tfds")
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        tfds_builders.build_h36m_lifting(tmp_path / "nothing.npz", [GT_2D], tmp_path / "tfds")
    assert not (tmp_path / "tfds").exists()


def test_failed_build_leaves_nothing_and_rerun_succeeds(tmp_path, monkeypatch):
    real = videopose3d.camera_examples

    def failing(sequence):
        yield next(real(sequence))
        raise RuntimeError("interrupted")

    monkeypatch.setattr(videopose3d, "camera_examples", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        tfds_builders.build_h36m_lifting(DATA_3D, [GT_2D], tmp_path)
    assert list(tmp_path.rglob("dataset_info.json")) == []
    assert not any(p.name.startswith(".incomplete") for p in tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="data_prep.convert_h36m"):
        tfds_builders.open_split("h36m_lifting/gt", tmp_path, "train")
    monkeypatch.setattr(videopose3d, "camera_examples", real)
    tfds_builders.build_h36m_lifting(DATA_3D, [GT_2D], tmp_path)
    assert len(tfds_builders.open_split("h36m_lifting/gt", tmp_path, "train")) == 8


_KILLED_BUILD = """
import os, sys
from gentg_jax.data import tfds_builders, videopose3d
real, count = videopose3d.camera_examples, [0]
def dying(sequence):
    for item in real(sequence):
        count[0] += 1
        if count[0] > 5:
            os._exit(3)  # like kill -9: no cleanup runs
        yield item
videopose3d.camera_examples = dying
tfds_builders.build_h36m_lifting(sys.argv[1], [sys.argv[2]], sys.argv[3])
"""


def test_killed_build_leaves_no_dataset_and_rerun_cleans_up(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_BUILD, DATA_3D, GT_2D, tmp_path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert any(p.name.startswith(".incomplete") for p in tmp_path.iterdir())  # the partial build
    assert _finished_datasets(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        tfds_builders.open_split("h36m_lifting/gt", tmp_path, "train")
    tfds_builders.build_h36m_lifting(DATA_3D, [GT_2D], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h36m_lifting"]
    assert len(tfds_builders.open_split("h36m_lifting/gt", tmp_path, "test")) == 4


def test_rerun_keeps_an_existing_dataset_unless_overwrite(tmp_path):
    (path,) = tfds_builders.build_h36m_lifting(DATA_3D, [GT_2D], tmp_path)
    info = path / "dataset_info.json"
    stamp = info.stat().st_mtime_ns
    assert tfds_builders.build_h36m_lifting(DATA_3D, [GT_2D], tmp_path) == [path]
    assert info.stat().st_mtime_ns == stamp
    os.utime(info, ns=(0, 0))
    tfds_builders.build_h36m_lifting(DATA_3D, [GT_2D], tmp_path, overwrite=True)
    assert info.stat().st_mtime_ns != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h36m_lifting"]
    assert len(tfds_builders.open_split("h36m_lifting/gt", tmp_path, "train")) == 8


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "data_prep.convert_h36m", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_line(tmp_path):
    result = _cli(
        "--data_3d", DATA_3D, "--data_2d", GT_2D, NOISY_2D, "--data_dir", tmp_path,
        "--train_subjects", "S1", "--test_subjects", "S5,S9",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "h36m_lifting/gt:" in result.stdout and "h36m_lifting/noisy:" in result.stdout
    assert len(tfds_builders.open_split("h36m_lifting/noisy", tmp_path, "test")) == 8
    bad = _cli("--data_3d", DATA / "README.md", "--data_2d", GT_2D, "--data_dir", tmp_path)
    assert bad.returncode == 1
    assert "convert_h36m:" in bad.stderr and "not an npz file" in bad.stderr
    assert "Traceback" not in bad.stderr
    typo = _cli(
        "--data_3d", DATA_3D, "--data_2d", GT_2D, "--data_dir", tmp_path / "typo",
        "--train_subjects", "S1,S10",
    )  # fmt: skip
    assert typo.returncode == 1 and not (tmp_path / "typo").exists()
    assert typo.stderr.strip().splitlines() == [
        f"convert_h36m: {DATA_3D}: train subjects ['S10'] are not there (subjects there: "
        "['S1', 'S5', 'S9']); fix --train_subjects"
    ]


def test_allow_trim_cuts_2d_of_any_length(tmp_path):
    assert videopose3d.trim_tolerance(100) == 5 and videopose3d.trim_tolerance(1146) == 11
    edit = BAD_INPUTS["2d_twice_as_long"][1]
    path = _corrupt(tmp_path, "2d", edit)
    (built,) = tfds_builders.build_h36m_lifting(DATA_3D, [path], tmp_path / "tfds", allow_trim=True)
    assert built.is_dir()
    walking = [ex for ex in _read_all("h36m_lifting/gt", tmp_path / "tfds", "train")]
    walking = [ex for ex in walking if ex["action"] == "Walking"]
    assert [len(ex["keypoints_2d"]) for ex in walking] == [FRAMES["S5", "Walking"]] * 4


def test_split_subject_typo_and_data_dir_file(tmp_path):
    with pytest.raises(ValueError, match=r"train subjects \['S10'\] are not there"):
        tfds_builders.build_h36m_lifting(
            DATA_3D, [GT_2D], tmp_path / "tfds", train_subjects=["S1", "S10"], test_subjects=["S9"]
        )
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        tfds_builders.build_h36m_lifting(DATA_3D, [GT_2D], not_a_dir / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


class _RunsCode:
    """Pickles as a call of open(marker, "w"): what a crafted file could do with any call."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("which", ["3d", "2d"])
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, which):
    marker = tmp_path / "marker"
    key = "positions_3d" if which == "3d" else "positions_2d"
    crafted = tmp_path / ("data_3d_h36m.npz" if which == "3d" else "data_2d_h36m_gt.npz")
    np.savez(crafted, **{key: {"S1": {"Playground": _RunsCode(marker)}}})
    data_3d, data_2d = (crafted, GT_2D) if which == "3d" else (DATA_3D, crafted)
    with pytest.raises(videopose3d.UnsafeFileError, match=f"{crafted}: '{key}'.*io.open"):
        tfds_builders.build_h36m_lifting(data_3d, [data_2d], tmp_path / "tfds")
    assert not marker.exists() and not (tmp_path / "tfds").exists()


def test_numpy_1_pickles_are_read(tmp_path):
    """A file written by numpy 1.x with pickle protocol 2 (numpy.core names, _codecs)."""
    positions = _load(DATA_3D, "positions_3d")
    array = np.empty((), dtype=object)
    array[()] = positions
    payload = pickle.dumps(array, protocol=2)
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct" in payload and b"_codecs" in payload
    path = tmp_path / "data_3d_h36m.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("positions_3d.npy", "w") as f:
        npy_format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(payload)
    loaded = videopose3d.load_positions_3d(path)
    np.testing.assert_array_equal(loaded["S9"]["Hop"], positions["S9"]["Hop"])
