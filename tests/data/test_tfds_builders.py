"""Tests for gentg_jax/data/tfds_builders.py and tfds_writer.py: features, names, synthetic_h36m,
random-access reading (also from a fresh process), sharding, and that TensorFlow is never needed.
The Human3.6M conversion itself is tested in test_convert_h36m.py."""

import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from gentg_jax import camera
from gentg_jax.data import synthetic, tfds_builders, tfds_writer
from tests import helpers

ROOT = helpers.REPO
DATA = helpers.TESTDATA
TINY = synthetic.SyntheticConfig(
    seed=3, subjects=("S1", "S9"), actions=("Walking", "Eating"), frames_per_sequence=24
)


def _read_all(name, data_dir, split):
    source = tfds_builders.open_split(name, data_dir, split)
    return [source[i] for i in range(len(source))]


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds_builders.build_synthetic_h36m(data_dir, generator=TINY)
    return data_dir


def test_features_spec():
    spec = tfds_builders.features()
    expected = {
        "keypoints_2d": ((None, 17, 2), np.float32),
        "scores": ((None, 17), np.float32),
        "pose_3d": ((None, 17, 3), np.float32),
        "intrinsics": ((9,), np.float32),
        "image_size": ((2,), np.int32),
    }
    assert set(spec.keys()) == {"subject", "action", "camera", *expected}
    for key, (shape, dtype) in expected.items():
        assert spec[key].shape == shape and spec[key].np_dtype == dtype


@pytest.mark.parametrize(
    "name, expected",
    [
        ("synthetic_h36m", ("synthetic_h36m", "detector")),
        ("synthetic_h36m/detector", ("synthetic_h36m", "detector")),
        ("synthetic_h36m/gt", ("synthetic_h36m", "gt")),
        ("h36m_lifting/cpn_ft_h36m_dbb", ("h36m_lifting", "cpn_ft_h36m_dbb")),
    ],
)
def test_parse_name(name, expected):
    assert tfds_builders.parse_name(name) == expected


@pytest.mark.parametrize(
    "name", ["h36m_lifting", "synthetic_h36m/noisy", "mnist", "h36m_lifting/a/b"]
)
def test_parse_name_rejects(name):
    with pytest.raises(ValueError, match="h36m_lifting/<source>"):
        tfds_builders.parse_name(name)


def test_resolve_data_dir(monkeypatch, tmp_path):
    assert tfds_builders.resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env"))
    assert tfds_builders.resolve_data_dir("") == tmp_path / "env"
    assert tfds_builders.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("TFDS_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tfds_builders.resolve_data_dir("") == tmp_path / "tensorflow_datasets"


@pytest.mark.parametrize(
    "name, source", [("synthetic_h36m", "detector"), ("synthetic_h36m/gt", "gt")]
)
def test_synthetic_reads_back_what_the_generator_made(synthetic_dir, name, source):
    generated = list(synthetic.generate_examples(TINY, source=source))
    for split, subject in (("train", "S1"), ("test", "S9")):
        examples = _read_all(name, synthetic_dir, split)
        expected = [ex for _, ex in generated if ex["subject"] == subject]
        assert len(examples) == len(expected) == 2 * 4  # actions x cameras
        for ours, theirs in zip(examples, expected, strict=True):
            _assert_same(ours, theirs)
            assert isinstance(ours["subject"], str) and isinstance(ours["camera"], str)
            assert ours["keypoints_2d"].shape == (24, 17, 2)
            assert ours["keypoints_2d"].dtype == np.float32


def test_synthetic_gt_and_detector(synthetic_dir):
    gt = _read_all("synthetic_h36m/gt", synthetic_dir, "test")
    detector = _read_all("synthetic_h36m", synthetic_dir, "test")
    for clean, noisy in zip(gt, detector, strict=True):
        np.testing.assert_array_equal(clean["pose_3d"], noisy["pose_3d"])
        np.testing.assert_array_equal(clean["scores"], 1.0)
        w, h = clean["image_size"]
        pixels = camera.image_coordinates(
            camera.project_to_2d(clean["pose_3d"], clean["intrinsics"]), w, h
        )
        assert np.abs(pixels - clean["keypoints_2d"]).max() < 0.01
        assert not np.array_equal(clean["keypoints_2d"], noisy["keypoints_2d"])
        assert 0 < noisy["scores"].min() and noisy["scores"].max() <= 1
    assert min(ex["scores"].min() for ex in detector) < 0.5


def test_split_source_pickles_and_batches(synthetic_dir):
    source = tfds_builders.open_split("synthetic_h36m/gt", synthetic_dir, "train")
    assert "synthetic_h36m/gt[train]" in repr(source)
    clone = pickle.loads(pickle.dumps(source))
    assert len(clone) == len(source) == 8
    batch = source.__getitems__([5, 0, 5])
    for index, example in zip([5, 0, 5], batch, strict=True):
        _assert_same(example, source[index])
        _assert_same(example, clone[index])


def test_missing_dataset_and_split_errors(synthetic_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m data_prep.make_synthetic"):
        tfds_builders.open_split("synthetic_h36m", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="--data_2d data_2d_h36m_cpn.npz"):
        tfds_builders.open_split("h36m_lifting/cpn", tmp_path, "train")
    with pytest.raises(ValueError, match="no split 'validation'"):
        tfds_builders.open_split("synthetic_h36m", synthetic_dir, "validation")


def test_synthetic_split_and_config_errors(tmp_path):
    # A subject named explicitly but not generated is an error (a typo), never left out.
    with pytest.raises(ValueError, match=r"test subjects \['S11'\] are not there"):
        tfds_builders.build_synthetic_h36m(
            tmp_path, generator=TINY, train_subjects=["S1"], test_subjects=["S9", "S11"]
        )
    with pytest.raises(ValueError, match="unknown synthetic_h36m configs"):
        tfds_builders.build_synthetic_h36m(tmp_path, generator=TINY, configs=["noisy"])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_builder_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="one H36MLiftingConfig"):
        tfds_builders.H36MLifting(data_dir=tmp_path)
    with pytest.raises(ValueError, match="not strings"):
        tfds_builders.SyntheticH36M(data_dir=tmp_path, generator=TINY, train_subjects="S1,S5")


def test_plain_tfds_reads_the_datasets_too(synthetic_dir):
    source = tfds.data_source("synthetic_h36m/gt", data_dir=synthetic_dir, split="test")
    assert len(source) == 8 and source[0]["subject"] == b"S9"


def test_streamed_shards_keep_the_order(synthetic_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_writer, "SHARD_BYTES", 1)  # one example per shard
    (path,) = tfds_builders.build_synthetic_h36m(tmp_path, generator=TINY, configs=["gt"])
    assert len(list(path.glob("synthetic_h36m-train.array_record-*"))) == 8
    info = json.loads((path / "dataset_info.json").read_text())
    assert [s["shardLengths"] for s in info["splits"]] == [["1"] * 8] * 2
    for split in tfds_builders.SPLITS:
        for ours, reference in zip(
            _read_all("synthetic_h36m/gt", tmp_path, split),
            _read_all("synthetic_h36m/gt", synthetic_dir, split),
            strict=True,
        ):
            _assert_same(ours, reference)


# Any module that executes `import tensorflow` is recorded (and fails). Probes that only ask
# whether TensorFlow exists (etils does, with importlib.util.find_spec) see a stand-in spec.
_GUARD = """
import importlib.abc, importlib.machinery, json, sys
attempts = []
class Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        attempts.append(module.__name__)
        raise ImportError("TensorFlow must not be needed")
class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, Loader())
        return None
sys.meta_path.insert(0, Guard())
"""
_BUILD = """
from gentg_jax.data import synthetic, tfds_builders
data_dir, data_3d, data_2d = sys.argv[1:4]
tiny = synthetic.SyntheticConfig(subjects=("S1", "S9"), actions=("Walking",), frames_per_sequence=8)
tfds_builders.build_synthetic_h36m(data_dir, generator=tiny, configs=["gt"])
tfds_builders.build_h36m_lifting(data_3d, [data_2d], data_dir)
print(json.dumps({"attempts": attempts}))
"""
_READ = """
from gentg_jax.data import tfds_builders
summary = {}
for name in ["synthetic_h36m/gt", "h36m_lifting/my-src.v2"]:
    source = tfds_builders.open_split(name, sys.argv[1], "test")
    example = source[len(source) - 1]
    summary[name] = [len(source), example["subject"], example["camera"], example["pose_3d"].shape]
print(json.dumps({"attempts": attempts, "summary": summary}))
"""


def _python(script, *args):
    result = subprocess.run(
        [sys.executable, "-c", _GUARD + script, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_build_and_fresh_process_read_need_no_tensorflow(tmp_path):
    data_2d = tmp_path / "data_2d_h36m_my-src.v2.npz"  # any source name is a config
    shutil.copy(DATA / "data_2d_h36m_gt.npz", data_2d)
    built = _python(_BUILD, tmp_path / "tfds", DATA / "data_3d_h36m.npz", data_2d)
    assert built["attempts"] == []
    read = _python(_READ, tmp_path / "tfds")
    assert read["attempts"] == []
    assert read["summary"] == {
        "synthetic_h36m/gt": [4, "S9", "60457274", [8, 17, 3]],
        "h36m_lifting/my-src.v2": [4, "S9", "60457274", [459, 17, 3]],
    }


def _make_synthetic(*args):
    return subprocess.run(
        [sys.executable, "-m", "data_prep.make_synthetic", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_synthetic_command_line(tmp_path):
    args = ["--data_dir", tmp_path, "--frames_per_sequence", 10, "--subjects", "S1,S9"]
    args += ["--actions", "Walking", "--configs", "gt", "--seed", 3]
    result = _make_synthetic(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "synthetic_h36m/gt:" in result.stdout
    assert [ex["subject"] for ex in _read_all("synthetic_h36m/gt", tmp_path, "train")] == ["S1"] * 4
    assert not (tmp_path / "synthetic_h36m" / "detector").exists()
    again = _make_synthetic(*args)
    assert again.returncode == 0 and "kept" in again.stderr
    bad = _make_synthetic("--data_dir", tmp_path, "--configs", "noisy")
    assert bad.returncode == 1 and "unknown synthetic_h36m configs" in bad.stderr
