"""Tests for gentg_jax/data/pipeline.py on in-memory sequences (and a tiny TFDS dataset)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gentg_jax import camera, skeleton
from gentg_jax.data import h36m, pipeline
from tests import helpers

DATA = helpers.TESTDATA
J = skeleton.NUM_JOINTS


def _example(subject, action, cam, pose_abs, intrinsic, w, h, scores=None):
    pixels = camera.image_coordinates(camera.project_to_2d(pose_abs, intrinsic), w, h)
    return {
        "subject": subject,
        "action": action,
        "camera": cam,
        "keypoints_2d": pixels.astype(np.float32),
        "scores": np.ones(pose_abs.shape[:2], np.float32) if scores is None else scores,
        "pose_3d": pose_abs.astype(np.float32),
        "intrinsics": np.asarray(intrinsic, np.float32),
        "image_size": np.asarray([w, h], np.int32),
    }


@pytest.fixture(scope="module")
def mocap_sequences():
    """Fixture mocap seen by two real cameras each, cut short to keep the test fast."""
    positions = np.load(DATA / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()
    examples = []
    for subject, actions in sorted(positions.items()):
        for action, world in actions.items():
            for index in (0, 3):
                cam = h36m.camera(subject, index)
                pose = camera.world_to_camera(world[:40], cam.orientation, cam.translation)
                examples.append(
                    _example(subject, action, cam.id, pose, cam.intrinsic, cam.res_w, cam.res_h)
                )
    return examples


def _id_sequences(lengths, seed=0):
    """Random sequences whose scores hold each frame's global index (kept exact by float32)."""
    rng = np.random.default_rng(seed)
    examples, offset = [], 0
    for s, length in enumerate(lengths):
        cam = h36m.camera("S1", s % 4)
        pose = rng.normal(0.0, 0.3, (length, J, 3)) + [0.0, 0.0, 5.0]
        ids = np.arange(offset, offset + length, dtype=np.float32)
        scores = np.repeat(ids[:, None], J, axis=1)
        examples.append(
            _example(f"S{s}", f"act{s}", cam.id, pose, cam.intrinsic, 1000, 1002, scores)
        )
        offset += length
    return examples


def _centres(batch, num_frames):
    return batch["scores"][:, num_frames // 2, 0].astype(np.int64)


def test_pack_normalises_2d_and_makes_3d_root_relative(mocap_sequences):
    packed = pipeline.pack_sequences(mocap_sequences)
    ex = mocap_sequences[1]
    w, h = ex["image_size"]
    start = packed.starts[1]
    rows = slice(start, start + len(ex["pose_3d"]))
    expected_2d = ex["keypoints_2d"] / w * 2 - np.asarray([1, h / w], np.float32)
    np.testing.assert_allclose(packed.keypoints_2d[rows], expected_2d, atol=1e-6)
    root = ex["pose_3d"][:, :1]
    np.testing.assert_allclose(packed.pose_3d[rows], ex["pose_3d"] - root, atol=1e-6)
    assert np.all(packed.pose_3d[:, skeleton.ROOT] == 0)
    assert packed.subject[1] == ex["subject"] and packed.camera[1] == ex["camera"]


def test_pack_rejects_bad_examples(mocap_sequences):
    bad = dict(mocap_sequences[0], scores=np.ones((3, J), np.float32))
    with pytest.raises(ValueError, match="scores has shape"):
        pipeline.pack_sequences([bad])
    missing = {k: v for k, v in mocap_sequences[0].items() if k != "intrinsics"}
    with pytest.raises(ValueError, match="missing fields"):
        pipeline.pack_sequences([missing])


def test_every_frame_is_a_window_centre_once_per_epoch():
    lengths, t, batch_size = [5, 9, 3, 12], 7, 4
    total = sum(lengths)
    ds = pipeline.train_dataset(
        _id_sequences(lengths), num_frames=t, batch_size=batch_size, seed=1, process_count=1
    )
    stream = np.concatenate([_centres(ds[k], t) for k in range(2 * total // batch_size + 1)])
    first, second = stream[:total], stream[total : 2 * total]
    assert sorted(first) == list(range(total))
    assert sorted(second) == list(range(total))
    assert not np.array_equal(first, second)  # each epoch is reshuffled


def test_hosts_take_disjoint_slices_of_the_same_global_batches():
    sequences = _id_sequences([11, 6, 14])
    total, t, batch_size = 31, 5, 6
    kwargs = dict(num_frames=t, batch_size=batch_size, seed=3)
    single = pipeline.train_dataset(sequences, process_index=0, process_count=1, **kwargs)
    hosts = [
        pipeline.train_dataset(sequences, process_index=p, process_count=3, **kwargs)
        for p in range(3)
    ]
    steps = -(-total // batch_size)
    for k in range(steps):
        parts = [host[k] for host in hosts]
        for key, value in single[k].items():
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)
    per_host = [np.concatenate([_centres(h[k], t) for k in range(steps)]) for h in hosts]
    epoch = np.concatenate([c.reshape(steps, -1) for c in per_host], axis=1).ravel()[:total]
    assert sorted(epoch) == list(range(total))


def test_windows_are_edge_padded_and_masked():
    lengths, t = [3, 10, 4], 7
    sequences = _id_sequences(lengths, seed=2)
    packed = pipeline.pack_sequences(sequences)
    ds = pipeline.train_dataset(
        sequences, num_frames=t, batch_size=17, seed=0, flip_augment=False, process_count=1
    )
    batch = ds[0]
    for row, centre in enumerate(_centres(batch, t)):
        s = packed.frame_sequence[centre]
        local = centre - packed.starts[s]
        pad = ((t // 2, t // 2), (0, 0), (0, 0))
        expected = np.pad(
            packed.keypoints_2d[packed.starts[s] : packed.starts[s] + lengths[s]], pad, "edge"
        )
        np.testing.assert_array_equal(batch["keypoints_2d"][row], expected[local : local + t])
        inside = np.arange(local - t // 2, local - t // 2 + t)
        np.testing.assert_array_equal(
            batch["frame_mask"][row], (inside >= 0) & (inside < lengths[s])
        )
        np.testing.assert_array_equal(batch["intrinsics"][row], sequences[s]["intrinsics"])


def test_batches_have_the_contract_shapes_and_root_relative_targets(mocap_sequences):
    ds = pipeline.train_dataset(
        mocap_sequences, num_frames=9, batch_size=4, seed=0, process_count=1
    )
    batch = ds[5]
    shapes = {k: (v.shape, v.dtype) for k, v in batch.items()}
    assert shapes == {
        "keypoints_2d": ((4, 9, J, 2), np.float32),
        "scores": ((4, 9, J), np.float32),
        "pose_3d": ((4, 9, J, 3), np.float32),
        "intrinsics": ((4, 9), np.float32),
        "frame_mask": ((4, 9), np.float32),
    }
    assert np.all(batch["pose_3d"][:, :, skeleton.ROOT] == 0)


def test_flip_twice_is_identity_for_numpy_and_jax():
    rng = np.random.default_rng(0)
    batch = {
        "keypoints_2d": rng.normal(size=(2, 3, J, 2)).astype(np.float32),
        "scores": rng.random((2, 3, J)).astype(np.float32),
        "pose_3d": rng.normal(size=(2, 3, J, 3)).astype(np.float32),
        "intrinsics": rng.normal(size=(2, 9)).astype(np.float32),
        "frame_mask": np.ones((2, 3), np.float32),
    }
    once = pipeline.flip_batch(batch)
    assert not np.allclose(once["pose_3d"], batch["pose_3d"])
    np.testing.assert_array_equal(once["pose_3d"][..., 0, 0], -batch["pose_3d"][..., 0, 0])
    np.testing.assert_array_equal(once["scores"][..., 1], batch["scores"][..., 4])
    for value in (batch, {k: jnp.asarray(v) for k, v in batch.items()}):
        twice = pipeline.flip_batch(pipeline.flip_batch(value))
        for key in batch:
            np.testing.assert_array_equal(np.asarray(twice[key]), batch[key])
    jitted = jax.jit(pipeline.flip_batch)(batch)  # the evaluator flips inside jit
    for key in batch:
        np.testing.assert_array_equal(np.asarray(jitted[key]), once[key])


def test_flipped_2d_is_the_projection_of_flipped_3d_with_the_flipped_camera(mocap_sequences):
    for ex in mocap_sequences[::2]:
        w, h = ex["image_size"]
        batch = {
            "keypoints_2d": camera.normalize_screen_coordinates(ex["keypoints_2d"], w, h)[None],
            "pose_3d": ex["pose_3d"][None],
            "intrinsics": ex["intrinsics"][None],
        }
        flipped = pipeline.flip_batch(batch)
        projected = camera.project_to_2d(flipped["pose_3d"], flipped["intrinsics"][:, None])
        np.testing.assert_allclose(flipped["keypoints_2d"], projected, atol=1e-5)


def test_training_flip_mirrors_about_half_the_windows_with_flip_batch(mocap_sequences):
    kwargs = dict(num_frames=5, batch_size=32, seed=4, process_count=1)
    plain = pipeline.train_dataset(mocap_sequences, flip_augment=False, **kwargs)
    augmented = pipeline.train_dataset(mocap_sequences, **kwargs)
    flipped_rows = 0
    for k in range(4):
        a, b = plain[k], augmented[k]
        mirrored = pipeline.flip_batch(a)
        for row in range(32):
            same = np.array_equal(b["pose_3d"][row], a["pose_3d"][row])
            reference = a if same else mirrored
            flipped_rows += not same
            for key in b:
                np.testing.assert_array_equal(b[key][row], reference[key][row])
    assert 32 <= flipped_rows <= 96


def test_same_seed_same_batches_other_seed_differs(mocap_sequences):
    make = lambda seed: pipeline.train_dataset(  # noqa: E731
        mocap_sequences, num_frames=9, batch_size=8, seed=seed, process_count=1
    )
    a, b, c = make(7), make(7), make(8)
    for k in (0, 3, 100):
        for key in a[k]:
            np.testing.assert_array_equal(a[k][key], b[k][key])
    assert not np.array_equal(a[0]["pose_3d"], c[0]["pose_3d"])


def test_restored_iterator_continues_at_the_next_batch(mocap_sequences):
    ds = pipeline.train_dataset(
        mocap_sequences, num_frames=9, batch_size=8, seed=0, process_count=1
    )
    iterator = pipeline.train_iterator(ds, num_threads=2)
    for _ in range(3):
        next(iterator)
    state = json.dumps(iterator.get_state())
    expected = [next(iterator) for _ in range(3)]
    restored = pipeline.train_iterator(ds, num_threads=0)
    restored.set_state(json.loads(state))
    for want in expected:
        got = next(restored)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_batch_size_must_divide_over_hosts(mocap_sequences):
    with pytest.raises(ValueError, match="multiple of count=3"):
        pipeline.train_dataset(mocap_sequences, num_frames=9, batch_size=8, seed=0, process_count=3)
    with pytest.raises(ValueError, match="multiple of count=2"):
        pipeline.eval_batches(mocap_sequences, num_frames=9, batch_size=3, process_count=2)
    with pytest.raises(ValueError, match="process_index 3"):
        pipeline.train_dataset(
            mocap_sequences, num_frames=9, batch_size=8, seed=0, process_index=3, process_count=2
        )


def test_eval_windows_follow_the_seq2seq_cut():
    sequence, first, counted = pipeline.eval_windows([5, 7, 12, 3], num_frames=5)
    np.testing.assert_array_equal(sequence, [0, 1, 1, 2, 2, 2, 3])
    np.testing.assert_array_equal(first, [0, 0, 2, 0, 5, 7, 0])
    np.testing.assert_array_equal(counted, [0, 0, 5, 0, 5, 10, 0])


def test_eval_batches_count_every_frame_once_and_carry_metadata():
    lengths, t = [5, 7, 12, 3], 5
    sequences = _id_sequences(lengths, seed=5)
    batches = list(pipeline.eval_batches(sequences, num_frames=t, batch_size=4, process_count=1))
    assert len(batches) == 2  # 7 windows, the last batch padded with one masked row
    assert np.all(batches[1]["frame_mask"][3] == 0)
    counts = [np.zeros(n) for n in lengths]
    for batch in batches:
        assert batch["keypoints_2d"].shape == (4, t, J, 2)
        for row in range(4):
            s = batch["sequence_index"][row, 0]
            assert np.all(batch["sequence_index"][row] == s)
            assert batch["subject"][row] == sequences[s]["subject"]
            assert batch["action"][row] == sequences[s]["action"]
            assert batch["camera"][row] == sequences[s]["camera"]
            frames = batch["frame_index"][row]
            np.add.at(counts[s], frames, batch["frame_mask"][row])
            # scores hold the global frame id, so this checks the gathered rows.
            start = sum(lengths[:s])
            np.testing.assert_array_equal(batch["scores"][row, :, 0], start + frames)
    for count in counts:
        np.testing.assert_array_equal(count, 1)
    last_of_seq2 = batches[1]["frame_index"][1]  # windows: 0, 1, 1, 2 | 2, 2, 3
    np.testing.assert_array_equal(last_of_seq2, np.arange(7, 12))
    np.testing.assert_array_equal(batches[1]["frame_mask"][1], [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(batches[1]["frame_mask"][2], [1, 1, 1, 0, 0])  # length 3


def test_eval_batches_split_over_hosts():
    sequences = _id_sequences([9, 4, 13], seed=6)
    kwargs = dict(num_frames=4, batch_size=6)
    single = list(pipeline.eval_batches(sequences, process_count=1, **kwargs))
    hosts = [
        list(pipeline.eval_batches(sequences, process_index=p, process_count=2, **kwargs))
        for p in range(2)
    ]
    assert len(hosts[0]) == len(hosts[1]) == len(single)
    for k, batch in enumerate(single):
        for key, value in batch.items():
            np.testing.assert_array_equal(np.concatenate([h[k][key] for h in hosts]), value)


def test_reads_a_tfds_dataset_once_and_cuts_it(tmp_path):
    from gentg_jax.data import synthetic, tfds_builders

    generator = synthetic.SyntheticConfig(
        subjects=("S1", "S9"), actions=h36m.ACTIONS[:2], frames_per_sequence=30
    )
    tfds_builders.build_synthetic_h36m(
        tmp_path,
        generator=generator,
        configs=("gt",),
        train_subjects=("S1",),
        test_subjects=("S9",),
    )
    name, data_dir = "synthetic_h36m/gt", str(tmp_path)
    test = pipeline.load_sequences(name, data_dir, "test")
    assert pipeline.load_sequences(name, data_dir, "test") is test  # served from memory
    assert len(test) == 8 and {ex["subject"] for ex in test} == {"S9"}
    for batch in pipeline.eval_batches(test, num_frames=16, batch_size=4, process_count=1):
        for row in range(4):
            ex = test[batch["sequence_index"][row, 0]]
            frames = batch["frame_index"][row]
            assert batch["camera"][row] == ex["camera"]
            w, h = ex["image_size"]
            np.testing.assert_allclose(
                batch["keypoints_2d"][row],
                camera.normalize_screen_coordinates(ex["keypoints_2d"][frames], w, h),
                atol=1e-6,
            )
            pose = ex["pose_3d"][frames]
            np.testing.assert_allclose(batch["pose_3d"][row], pose - pose[:, :1], atol=1e-6)
    train = pipeline.load_sequences(name, data_dir, "train")
    ds = pipeline.train_dataset(train, num_frames=16, batch_size=4, seed=0, process_count=1)
    assert ds[0]["keypoints_2d"].shape == (4, 16, J, 2)


def test_select_sequences_caps_windows_and_covers_actions(tiny_data_dir):
    test_sequences = pipeline.load_sequences("synthetic_h36m", tiny_data_dir, "test")
    chosen = pipeline.select_sequences(test_sequences, 9, max_windows=30)
    windows = sum(len(pipeline.eval_windows([len(e["keypoints_2d"])], 9)[0]) for e in chosen)
    assert 0 < windows <= 30
    assert {e["action"].split(" ")[0] for e in chosen} == set(helpers.ACTIONS)
    assert pipeline.select_sequences(test_sequences, 9, 0) == list(test_sequences)
