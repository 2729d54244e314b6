"""Mocap conversion (gentg_jax/data/mocap/convert.py, data_prep/convert_mocap.py) on small
synthetic walkers written as Bandai-Namco BVH files (tests/data/mocap_files.py): splits by
performer, the written VideoPose3D files against an independent projection, rejections and
errors, and one round trip mocap -> TFDS -> training -> per-action evaluation."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gentg_jax.data import h36m, mocap, pipeline, tfds_builders
from gentg_jax.data.mocap import assign, convert
from gentg_jax.train import loop
from tests import helpers
from tests.data.mocap_files import BANDAI, bvh_text, walk_channels

# (performer = Bandai style, action, frames, walking speed in cm/s)
CLIPS = (
    ("happy", "walk", 120, 100.0),
    ("happy", "bow", 90, 30.0),
    ("sad", "walk", 110, 80.0),
    ("sad", "bow", 80, 20.0),
)


def _bandai_file(folder, style, action, frames, speed, names=BANDAI, take=1):
    path = folder / f"dataset-1_{action}_{style}_{take:03d}.bvh"
    path.write_text(bvh_text(names, *walk_channels(frames, speed_cm=speed)))
    return path


@pytest.fixture(scope="module")
def walkers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mocap") / "walkers"
    folder.mkdir()
    for clip in CLIPS:
        _bandai_file(folder, *clip)
    return folder


@pytest.fixture(scope="module")
def converted(walkers, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    summary = mocap.convert_mocap([mocap.MocapSource(walkers, "bandai")], data_dir, "walkers")
    return data_dir, summary


def test_auto_split_keeps_performers_in_one_split(converted):
    data_dir, summary = converted
    assert summary["clips"] == {"read": 4, "accepted": 4, "rejected": 0}
    details = summary["clip_details"]
    by_performer = {}
    for clip in details:
        by_performer.setdefault(clip["performer"], set()).add(clip["subject"])
        assert clip["action"] in clip["file"]  # dataset-1_<action>_<style>_<take>
    assert set(by_performer) == {"walkers/happy", "walkers/sad"}
    assert all(len(subjects) == 1 for subjects in by_performer.values())
    splits = {s: summary["splits"][s]["performers"] for s in ("train", "test")}
    assert sorted(splits["train"] + splits["test"]) == ["walkers/happy", "walkers/sad"]
    assert summary["frames"] == sum(frames for *_, frames, _ in CLIPS)
    assert summary["in_image_share"]["min"] >= convert.MIN_IN_IMAGE_SHARE
    # TFDS: one example per (sequence, camera), actions named "<action> <clip>".
    for split in ("train", "test"):
        source = tfds_builders.open_split("mocap_h36m/walkers_detector", data_dir, split)
        assert len(source) == 4 * summary["splits"][split]["sequences"]
        assert {source[i]["action"].split()[0] for i in range(len(source))} == {"walk", "bow"}
    assert len(pipeline.load_sequences("mocap_h36m/walkers_gt", data_dir, "train")) > 0
    assert (data_dir / "mocap_h36m_sources" / "walkers" / convert.SUMMARY_FILE).is_file()


def _rotation(q):
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def _project_by_hand(world, subject, index):
    """Pixels of world points through the public calibration (pixel units, no library code)."""
    intrinsics, extrinsics = h36m.INTRINSICS[index], h36m.EXTRINSICS[subject][index]
    local = (world - np.array(extrinsics.translation_mm) / 1000) @ _rotation(
        np.array(extrinsics.orientation, np.float64)
    )
    xy = local[..., :2] / local[..., 2:]
    r2 = np.sum(xy**2, axis=-1, keepdims=True)
    k, p = np.array(intrinsics.radial_distortion), np.array(intrinsics.tangential_distortion)
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    distorted = xy * (radial + np.sum(p * xy, axis=-1, keepdims=True)) + p * r2
    return np.array(intrinsics.focal_length) * distorted + np.array(intrinsics.center)


def test_written_files_reproject_and_hold_scores(converted):
    data_dir, summary = converted
    folder = data_dir / "mocap_h36m_sources" / "walkers"
    positions_3d = np.load(folder / "data_3d_walkers.npz", allow_pickle=True)["positions_3d"].item()
    gt = np.load(folder / "data_2d_walkers_gt.npz", allow_pickle=True)
    detector = np.load(folder / "data_2d_walkers_detector.npz", allow_pickle=True)
    assert gt["metadata"].item()["num_joints"] == 17
    gt, detector = gt["positions_2d"].item(), detector["positions_2d"].item()
    count = 0
    for subject, actions in positions_3d.items():
        for action, world in actions.items():
            assert world.shape[1:] == (17, 3) and world.dtype == np.float32
            assert 0.03 < np.percentile(world[:, [3, 6], 2].min(axis=1), 2) < 0.2  # on the floor
            for index in range(4):
                by_hand = _project_by_hand(world.astype(np.float64), subject, index)
                assert np.abs(gt[subject][action][index] - by_hand).max() < 0.5
                noisy = detector[subject][action][index]
                assert noisy.shape == (len(world), 17, 3)
                assert 0 <= noisy[..., 2].min() and noisy[..., 2].max() <= 1
                assert 0.5 < np.median(np.abs(noisy[..., :2] - by_hand)) < 20
            count += 1
    assert count == summary["sequences"]


def test_existing_datasets_are_kept(converted, walkers):
    data_dir, summary = converted
    info = data_dir / "mocap_h36m" / "walkers_gt" / "1.0.0" / "dataset_info.json"
    written = info.stat().st_mtime_ns
    again = mocap.convert_mocap([mocap.MocapSource(walkers, "bandai")], data_dir, "walkers")
    assert again == summary and info.stat().st_mtime_ns == written


def test_cli_with_csv_rejects_mirrored_and_broken_files(tmp_path, compilation_cache):
    folder = tmp_path / "mocap"
    folder.mkdir()
    for clip in CLIPS[:3]:
        _bandai_file(folder, *clip)
    swapped = {g: n.replace("_L", "_X").replace("_R", "_L").replace("_X", "_R")
               for g, n in BANDAI.items()}  # fmt: skip
    mirrored = _bandai_file(folder, "proud", "walk", 100, 100.0, names=swapped)
    broken = _bandai_file(folder, "proud", "walk", 60, 100.0, take=2)
    broken.write_text(broken.read_text().rsplit("\n", 3)[0] + "\n")  # two frames short
    csv = tmp_path / "subjects.csv"
    csv.write_text(
        "clip,subject,action\n"
        "dataset-1_walk_happy_001,S1,\n"
        "dataset-1_bow_happy_001.bvh,S5,greet\n"
        "dataset-1_walk_sad_001,S11,\n"
        "dataset-1_walk_proud_001,S9,\n"
    )
    flags = [f"--mocap={folder}", f"--subjects={csv}", "--name=hand"]  # the rig: detected
    command = [sys.executable, "-m", "data_prep.convert_mocap", *flags, f"--data_dir={tmp_path}"]
    result = subprocess.run(
        command,
        env=helpers.subprocess_env(compilation_cache, 1),
        cwd=str(helpers.REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"rejected: {mirrored}: left/right swapped or mirrored rig?" in result.stdout
    assert f"rejected: {broken}:" in result.stdout and "MOTION declares" in result.stdout
    summary = json.loads((tmp_path / "mocap_h36m_sources/hand/conversion_summary.json").read_text())
    assert summary["clips"] == {"read": 5, "accepted": 3, "rejected": 2}
    assert summary["sources"] == [{"path": str(folder), "rig": "bandai"}]
    assigned = {c["file"].split("/")[-1]: (c["subject"], c["action"])
                for c in summary["clip_details"]}  # fmt: skip
    assert assigned == {
        "dataset-1_walk_happy_001.bvh": ("S1", "walk"),
        "dataset-1_bow_happy_001.bvh": ("S5", "greet"),
        "dataset-1_walk_sad_001.bvh": ("S11", "walk"),
    }
    source = tfds_builders.open_split("mocap_h36m/hand_gt", tmp_path, "test")
    assert {source[i]["subject"] for i in range(len(source))} == {"S11"}


def test_errors_bad_csv_subject_and_missing_rig_joint(walkers, tmp_path):
    csv = tmp_path / "subjects.csv"
    csv.write_text("clip,subject,action\ndataset-1_walk_happy_001,S1,\ndataset-1_bow_sad_001,S2,\n")
    with pytest.raises(ValueError, match=r"subjects.csv:3: clip 'dataset-1_bow_sad_001': unknown "
                       r"subject 'S2'; use an H36M subject: S1, S5"):  # fmt: skip
        mocap.convert_mocap([mocap.MocapSource(walkers, "bandai")], tmp_path, "x", subjects=csv)
    folder = tmp_path / "no_toes"
    folder.mkdir()
    path = _bandai_file(folder, "happy", "walk", 60, 100.0, names={**BANDAI, "ltoe": "ToeL"})
    with pytest.raises(mocap.RigMapError, match=rf"{path}: rig map 'bandai' needs point 'Toes_L'"):
        mocap.convert_mocap([mocap.MocapSource(folder, "bandai")], tmp_path, "x")
    assert not (tmp_path / "mocap_h36m").exists()


def test_assignment_rules():
    # Deterministic; each performer to one subject; the test split gets the first in hash order.
    frames = {f"p{k}": 100 * (k + 1) for k in range(8)}
    chosen = assign.auto_subjects(frames, seed=0)
    assert chosen == assign.auto_subjects(dict(reversed(frames.items())), seed=0)
    test = [p for p, s in chosen.items() if s in h36m.TEST_SUBJECTS]
    assert 0 < sum(frames[p] for p in test) <= assign.TEST_SHARE * sum(frames.values())
    assert set(chosen.values()) == set(h36m.SUBJECTS)
    # Each folder is split on its own: a combined split is the union of the separate ones.
    groups = {p: "ab"[k % 2] for k, p in enumerate(frames)}
    both = assign.auto_subjects(frames, 0, groups)
    for group in "ab":
        alone = assign.auto_subjects({p: n for p, n in frames.items() if groups[p] == group}, 0)
        assert {p for p, s in alone.items() if s in h36m.TEST_SUBJECTS} == {
            p for p, s in both.items() if groups[p] == group and s in h36m.TEST_SUBJECTS
        }
    with pytest.raises(ValueError, match="at least two performers"):
        assign.auto_subjects({"solo": 10})
    path = pathlib.Path
    cases = {"cmu/002_06.bvh": ("bend-scoop", "02"), "cmu/005_01.bvh": ("dance", "05"),
             "cmu/099_01.bvh": ("cmu99", "99")}  # fmt: skip
    for name, (action, performer) in cases.items():
        assert assign.clip_action(path(name), "cc_base") == action
        assert assign.clip_performer(path(name), path("cmu"), "cc_base") == performer
    assert assign.clip_action(path("a/walk_03.bvh"), "mine") == "walk"
    regex = r"^(?P<performer>[a-z]+)-(?P<action>[a-z ]+)$"
    assert assign.clip_action(path("a/bob-jumping jacks.bvh"), "mine", regex) == "jumping-jacks"
    assert assign.clip_performer(path("a/bob-run.bvh"), path("a"), "mine", regex) == "bob"
    with pytest.raises(ValueError, match="cannot tell its performer"):
        assign.clip_performer(path("a/run.bvh"), path("a"), "mine")
    parsed = tfds_builders.parse_name("mocap_h36m/cmu_v2_detector")
    assert parsed == ("mocap_h36m", "cmu_v2_detector")
    with pytest.raises(ValueError, match="mocap_h36m/<name>_gt"):
        tfds_builders.parse_name("mocap_h36m/cmu")


def test_round_trip_mocap_train_evaluate(converted, tmp_path):
    data_dir, summary = converted
    config = helpers.tiny_config(str(data_dir), num_steps=20, eval_every=20, log_every=10)
    config.data.name = "mocap_h36m/walkers_detector"
    result = loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert np.isfinite(result.eval_metrics["p1"]) and result.eval_metrics["p1"] > 0
    tables = json.loads((tmp_path / "run" / "eval" / "step_00000020.json").read_text())["tables"]
    test_actions = {a for a, v in summary["actions"].items() if v["test"]}
    assert set(tables["P1"]["actions"]) == test_actions == {"walk", "bow"}
