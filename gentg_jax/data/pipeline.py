"""Grain input pipelines: T-frame windows, flip augmentation, normalisation, batching, sharding.

The core works on in-memory sequences: a list of example dicts as stored in the TFDS datasets
(`subject`, `action`, `camera`, `keypoints_2d` (T,17,2) pixels, `scores` (T,17), `pose_3d`
(T,17,3) absolute camera-frame metres, `intrinsics` (9,), `image_size` (2,) = (w, h)).
`pack_sequences` concatenates them into flat frame arrays (2D already normalised, 3D already
root-relative) so that a batch of windows is one fancy-index gather with clipped indices.

Training (`train_dataset` / `train_iterator`): an infinite stream of window centres, one per frame
of every sequence per epoch, shuffled by grain (each epoch reshuffled deterministically). Global
batch k is positions [k*B, (k+1)*B) of that stream; host p of P takes its B/P slice, so the global
batches do not depend on the number of hosts and the iterator state (`{"next_index": k}`) restores
onto any host layout. Evaluation (`eval_batches`): the seq2seq protocol's non-overlapping windows,
optionally of a subset of whole sequences (`select_sequences`).
"""

import dataclasses
import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np

from gentg_jax import camera, metrics, skeleton
from gentg_jax.types import Batch

# The batch entries that go to devices; the rest of an evaluation batch is host-side metadata.
DEVICE_KEYS = ("keypoints_2d", "scores", "pose_3d", "intrinsics", "frame_mask")

_ARRAY_FIELDS = ("keypoints_2d", "scores", "pose_3d", "intrinsics", "image_size")
_TEXT_FIELDS = ("subject", "action", "camera")
_FLIP_PERMUTATION = np.asarray(skeleton.FLIP_PERMUTATION)


@dataclasses.dataclass(frozen=True)
class PackedSequences:
    """All frames of all sequences in flat arrays; sequence s is frames [starts[s], +lengths[s])."""

    keypoints_2d: np.ndarray  # (N, 17, 2) float32, normalised screen coordinates
    scores: np.ndarray  # (N, 17) float32
    pose_3d: np.ndarray  # (N, 17, 3) float32, camera frame metres, root-relative
    intrinsics: np.ndarray  # (S, 9) float32
    starts: np.ndarray  # (S,) int64
    lengths: np.ndarray  # (S,) int64
    frame_sequence: np.ndarray  # (N,) int32: the sequence each frame belongs to
    subject: np.ndarray  # (S,) str
    action: np.ndarray  # (S,) str
    camera: np.ndarray  # (S,) str

    @property
    def num_frames(self) -> int:
        return int(self.keypoints_2d.shape[0])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _checked_example(example: Mapping[str, Any], index: int) -> dict[str, np.ndarray]:
    missing = [k for k in _ARRAY_FIELDS + _TEXT_FIELDS if k not in example]
    if missing:
        raise ValueError(f"sequence {index}: missing fields {missing}")
    out = {k: np.asarray(example[k]) for k in _ARRAY_FIELDS}
    name = f"sequence {index} ({'/'.join(_text(example[k]) for k in _TEXT_FIELDS)})"
    length = out["keypoints_2d"].shape[0] if out["keypoints_2d"].ndim else 0
    expected = {
        "keypoints_2d": (length, skeleton.NUM_JOINTS, 2),
        "scores": (length, skeleton.NUM_JOINTS),
        "pose_3d": (length, skeleton.NUM_JOINTS, 3),
        "intrinsics": (9,),
        "image_size": (2,),
    }
    for key, shape in expected.items():
        if out[key].shape != shape:
            raise ValueError(f"{name}: {key} has shape {out[key].shape}, expected {shape}")
    if length == 0:
        raise ValueError(f"{name}: has no frames")
    return out


def pack_sequences(sequences: Sequence[Mapping[str, Any]]) -> PackedSequences:
    """Validates and concatenates example dicts; normalises 2D, makes 3D root-relative."""
    if not sequences:
        raise ValueError("no sequences to pack")
    checked = [_checked_example(example, i) for i, example in enumerate(sequences)]
    keypoints = []
    for ex in checked:
        w, h = (float(v) for v in ex["image_size"])
        keypoints.append(
            camera.normalize_screen_coordinates(ex["keypoints_2d"].astype(np.float32), w, h)
        )
    pose = np.concatenate([ex["pose_3d"] for ex in checked]).astype(np.float32, copy=False)
    lengths = np.asarray([ex["keypoints_2d"].shape[0] for ex in checked], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return PackedSequences(
        keypoints_2d=np.concatenate(keypoints).astype(np.float32, copy=False),
        scores=np.concatenate([ex["scores"] for ex in checked]).astype(np.float32, copy=False),
        pose_3d=pose - pose[:, skeleton.ROOT : skeleton.ROOT + 1],
        intrinsics=np.stack([ex["intrinsics"] for ex in checked]).astype(np.float32),
        starts=starts,
        lengths=lengths,
        frame_sequence=np.repeat(np.arange(len(checked), dtype=np.int32), lengths),
        **{k: np.asarray([_text(ex[k]) for ex in sequences]) for k in _TEXT_FIELDS},
    )


@functools.lru_cache(maxsize=4)
def _cached_split(
    name: str, data_dir: str | os.PathLike | None, split: str
) -> tuple[dict[str, Any], ...]:
    # Imported here: TFDS is a heavy import that the in-memory core does not need.
    from gentg_jax.data import tfds_builders

    source = tfds_builders.open_split(name, data_dir, split)
    return tuple(source[i] for i in range(len(source)))


def load_sequences(
    name: str, data_dir: str | os.PathLike | None, split: str
) -> tuple[dict[str, Any], ...]:
    """All examples of a TFDS split, read once per process and then served from memory.

    Args:
      name: dataset name, e.g. "synthetic_h36m" or "h36m_lifting/gt".
      data_dir: TFDS data_dir (None or "" for $TFDS_DATA_DIR or ~/tensorflow_datasets).
      split: "train" or "test".

    Returns:
      The decoded example dicts (shared with later calls: treat them as read-only).
    """
    return _cached_split(name, data_dir, split)


def flip_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Left-right mirror of a batch (any of keypoints_2d, scores, pose_3d, intrinsics present).

    2D is in normalised screen coordinates, so mirroring the image is x -> -x; intrinsics follow
    via `camera.flip_intrinsic`. Other entries (frame_mask, metadata) pass through unchanged.
    """
    out = dict(batch)
    for key in ("keypoints_2d", "pose_3d"):
        if key in batch:
            out[key] = skeleton.flip_poses(batch[key])
    if "scores" in batch:
        out["scores"] = batch["scores"][..., _FLIP_PERMUTATION]
    if "intrinsics" in batch:
        out["intrinsics"] = camera.flip_intrinsic(batch["intrinsics"])
    return out


def gather_windows(
    packed: PackedSequences, sequence: np.ndarray, first: np.ndarray, num_frames: int
) -> tuple[Batch, np.ndarray]:
    """Gathers windows [first, first + T) of the given sequences, edge-padded at both ends.

    Args:
      packed: the sequences.
      sequence: (B,) sequence indices.
      first: (B,) local index of each window's first frame (may be negative or run past the end).
      num_frames: T.

    Returns:
      The batch (keypoints_2d, scores, pose_3d, intrinsics, frame_mask = 1 inside the sequence)
      and the (B, T) unclipped local frame indices.
    """
    local = first[:, None] + np.arange(num_frames)
    length = packed.lengths[sequence][:, None]
    rows = packed.starts[sequence][:, None] + np.clip(local, 0, length - 1)
    batch = {
        "keypoints_2d": packed.keypoints_2d[rows],
        "scores": packed.scores[rows],
        "pose_3d": packed.pose_3d[rows],
        "intrinsics": packed.intrinsics[sequence],
        "frame_mask": ((local >= 0) & (local < length)).astype(np.float32),
    }
    return batch, local


def _host_batch_size(
    num_frames: int, batch_size: int, process_index: int | None, process_count: int | None
) -> tuple[int, int, int]:
    """Checks the sizes; returns (process index, process count, host batch size)."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if not 0 <= index < count:
        raise ValueError(f"process_index {index} is not in [0, process_count={count})")
    if batch_size <= 0 or batch_size % count:
        raise ValueError(f"global batch_size {batch_size} must be a positive multiple of {count=}")
    return index, count, batch_size // count


@dataclasses.dataclass(frozen=True)
class _TrainBatch:
    """Host slice of global batch k: window centres -> gathered, randomly flipped windows."""

    packed: PackedSequences
    num_frames: int
    flip_augment: bool
    seed: int
    host_slice: slice
    global_batch_size: int

    def __call__(self, step: int, centres: np.ndarray) -> Batch:
        sequence = self.packed.frame_sequence[centres]
        first = centres - self.packed.starts[sequence] - self.num_frames // 2
        batch, _ = gather_windows(self.packed, sequence, first, self.num_frames)
        if self.flip_augment:
            # Drawn for the whole global batch so that flips do not depend on the host layout.
            rng = np.random.default_rng([self.seed, step])
            flip = rng.random(self.global_batch_size)[self.host_slice] < 0.5
            rows = np.flatnonzero(flip)
            flipped = flip_batch({k: v[rows] for k, v in batch.items()})
            for key, value in flipped.items():
                batch[key][rows] = value
        return batch


def train_dataset(
    sequences: Sequence[Mapping[str, Any]] | PackedSequences,
    *,
    num_frames: int,
    batch_size: int,
    seed: int,
    flip_augment: bool = True,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
    """Infinite dataset of this host's training batches; element k is its part of global batch k.

    Every frame of every sequence is the centre of exactly one window per epoch (frame
    T // 2 of the window); windows are edge-padded past a sequence's ends (frame_mask 0 there).

    Args:
      sequences: example dicts or `pack_sequences` output.
      num_frames: T.
      batch_size: the global batch size; each host gets batch_size / process_count windows.
      seed: shuffle and flip seed.
      flip_augment: mirror each window with probability 0.5 (`flip_batch`).
      process_index: this host (default jax.process_index()).
      process_count: number of hosts (default jax.process_count()).

    Returns:
      A grain MapDataset of host-local numpy batches: keypoints_2d (b,T,17,2), scores (b,T,17),
      pose_3d (b,T,17,3) root-relative, intrinsics (b,9), frame_mask (b,T).
    """
    packed = sequences if isinstance(sequences, PackedSequences) else pack_sequences(sequences)
    index, count, host_batch = _host_batch_size(
        num_frames, batch_size, process_index, process_count
    )
    # grain shuffles epoch e with seed + e; hashing the user seed keeps nearby seeds unrelated.
    shuffle_seed = int(np.random.SeedSequence(seed).generate_state(1)[0])
    centres = grain.MapDataset.range(packed.num_frames).shuffle(seed=shuffle_seed).repeat()
    host_chunks = centres.batch(host_batch)[index::count]
    return host_chunks.map_with_index(
        _TrainBatch(
            packed=packed,
            num_frames=num_frames,
            flip_augment=flip_augment,
            seed=seed,
            host_slice=slice(index * host_batch, (index + 1) * host_batch),
            global_batch_size=batch_size,
        )
    )


def train_iterator(
    dataset: grain.MapDataset, *, num_threads: int = 0, prefetch: int = 2
) -> grain.DatasetIterator:
    """Iterator over `train_dataset` batches.

    A batch takes a few milliseconds to gather, and JAX dispatches device steps asynchronously, so
    the default reads synchronously; `num_threads` > 0 prepares up to `prefetch` batches in
    background threads (worth it only when the consuming thread is busy with Python work; glibc
    gives each thread a malloc arena that returns freed batches to the OS, so threaded batches
    cost about twice the CPU in page faults unless MALLOC_ARENA_MAX=1 is set).
    `iterator.get_state()` is a JSON-serialisable dict ({"next_index": k}); `set_state` on a new
    iterator over the same dataset continues at exactly the next batch.
    """
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(dataset.to_iter_dataset(options))


def eval_windows(lengths: Sequence[int], num_frames: int) -> tuple[np.ndarray, ...]:
    """The seq2seq evaluation cut of each sequence into T-frame windows.

    Non-overlapping windows from frame 0; when T does not divide the length, one more window
    aligned to the sequence end, counting only the frames not covered before. A sequence shorter
    than T is one edge-padded window.

    Returns:
      (sequence, first, counted_from): per window its sequence index, local first frame and the
      first local frame it counts in metrics.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    sequence, first, counted = [], [], []
    for s, length in enumerate(int(n) for n in lengths):
        starts = list(range(0, length - num_frames + 1, num_frames)) or [0]
        ends = [start + num_frames for start in starts]
        if ends[-1] < length:
            starts.append(length - num_frames)
        sequence += [s] * len(starts)
        first += starts
        counted += [0] + ends[: len(starts) - 1]
    return np.asarray(sequence), np.asarray(first), np.asarray(counted)


def eval_batches(
    sequences: Sequence[Mapping[str, Any]] | PackedSequences,
    *,
    num_frames: int,
    batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[Batch]:
    """This host's evaluation batches (never flipped: flip TTA belongs to the evaluator).

    Every host yields the same number of batches; the last global batch is padded with repeats of
    the final window with frame_mask 0. Besides the training keys each batch holds host-side
    metadata: subject, action, camera (b,) str and sequence_index, frame_index (b, T) int32
    (frame_index is the clipped local frame each row was read from). Summing predictions over
    frames with frame_mask 1 counts every frame of every sequence exactly once.
    """
    packed = sequences if isinstance(sequences, PackedSequences) else pack_sequences(sequences)
    index, _, host_batch = _host_batch_size(num_frames, batch_size, process_index, process_count)
    windows = eval_windows(packed.lengths, num_frames)
    # Checked and cut above, read lazily below: a bad argument fails at the call.
    return _eval_batches(packed, windows, num_frames, batch_size, index * host_batch, host_batch)


def _eval_batches(packed, windows, num_frames, batch_size, offset, host_batch) -> Iterator[Batch]:
    sequence, first, counted = windows
    num_windows = len(sequence)
    padded = -(-num_windows // batch_size) * batch_size
    order = np.minimum(np.arange(padded), num_windows - 1)
    real = np.arange(padded) < num_windows
    for start in range(offset, padded, batch_size):
        rows = order[start : start + host_batch]
        batch, local = gather_windows(packed, sequence[rows], first[rows], num_frames)
        keep = (local >= counted[rows][:, None]) & real[start : start + host_batch, None]
        batch["frame_mask"] *= keep
        length = packed.lengths[sequence[rows]][:, None]
        batch["frame_index"] = np.clip(local, 0, length - 1).astype(np.int32)
        batch["sequence_index"] = np.broadcast_to(sequence[rows, None], local.shape).astype(
            np.int32
        )
        for key in _TEXT_FIELDS:
            batch[key] = getattr(packed, key)[sequence[rows]]
        yield batch


def device_batch(batch: Mapping[str, np.ndarray]) -> Batch:
    """The entries of a pipeline batch that go to devices (`DEVICE_KEYS`, no metadata)."""
    return {k: batch[k] for k in DEVICE_KEYS}


def select_sequences(
    sequences: Sequence[Mapping[str, Any]], num_frames: int, max_windows: int
) -> list[Mapping[str, Any]]:
    """A deterministic subset of whole sequences with at most `max_windows` evaluation windows
    in total (at least one sequence), taken round-robin over actions so every action is
    represented as far as the budget allows; 0 keeps every sequence."""
    if max_windows <= 0:
        return list(sequences)
    by_action: dict[str, list[Mapping[str, Any]]] = {}
    for example in sequences:
        by_action.setdefault(metrics.action_name(_text(example["action"])), []).append(example)
    queues = [by_action[name] for name in sorted(by_action)]
    ordered = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
    chosen, total = [], 0
    for example in ordered:
        windows = len(eval_windows([len(example["keypoints_2d"])], num_frames)[0])
        if chosen and total + windows > max_windows:
            continue
        chosen.append(example)
        total += windows
    return chosen
