"""Sliding windows for inference: where they start, and how overlapping window outputs are
blended back into one sequence (numpy).

A sequence is cut into windows of the model's T frames (stride `stride`, the last window aligned
to the sequence end; a sequence shorter than T is edge-padded at its end); what the models
predict on a batch of windows is `gentg_jax.predict.lift_windows`. `blend_windows` averages the
windows' outputs with Hann weights, which are strictly positive so every frame is covered.
"""

from __future__ import annotations

import numpy as np


def window_starts(length: int, num_frames: int, stride: int) -> np.ndarray:
    """First frames of the windows covering `length` frames: every `stride` frames from 0, plus
    one aligned to the end when needed; a single window at 0 when length <= num_frames."""
    if not 1 <= stride <= num_frames:
        raise ValueError(f"window stride must be in [1, {num_frames}], got {stride}")
    last = max(length - num_frames, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return np.asarray(starts, np.int32)


def window_frames(starts: np.ndarray, num_frames: int, length: int) -> np.ndarray:
    """(W, T) frame indices of each window; frames past the sequence end repeat its last one."""
    return np.minimum(starts[:, None] + np.arange(num_frames), length - 1)


def blend_weights(num_frames: int) -> np.ndarray:
    """(T,) strictly positive Hann weights for averaging overlapping window outputs."""
    return np.sin(np.pi * (np.arange(num_frames) + 1) / (num_frames + 1)) ** 2


def blend_windows(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(B, W, T, ...) window outputs -> (B, length, ...) weighted average over covering windows."""
    weights = blend_weights(values.shape[2])
    trailing = (1,) * (values.ndim - 3)
    total = np.zeros((values.shape[0], length) + values.shape[3:], np.float64)
    norm = np.zeros(length, np.float64)
    for index, start in enumerate(starts):
        n = min(len(weights), length - start)
        total[:, start : start + n] += weights[:n].reshape((n,) + trailing) * values[:, index, :n]
        norm[start : start + n] += weights[:n]
    return (total / norm.reshape((length,) + trailing)).astype(np.float32)
