"""The Human3.6M 17-joint skeleton, left-right flips, its joint+limb graph, and COCO-17 input.

Joint order and parents follow the 17-joint protocol used by VideoPose3D and the methods that
report on Human3.6M (DESIGN.md, "Conventions").
"""

from __future__ import annotations

import collections

import numpy as np

JOINT_NAMES = (
    "hip",
    "rhip",
    "rknee",
    "rankle",
    "lhip",
    "lknee",
    "lankle",
    "spine",
    "thorax",
    "neck_nose",
    "head",
    "lshoulder",
    "lelbow",
    "lwrist",
    "rshoulder",
    "relbow",
    "rwrist",
)
NUM_JOINTS = len(JOINT_NAMES)
ROOT = 0
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
JOINTS_LEFT = (4, 5, 6, 11, 12, 13)
JOINTS_RIGHT = (1, 2, 3, 14, 15, 16)

# Limb i connects PARENTS[i + 1] to joint i + 1: every non-root joint ends exactly one limb.
LIMBS = tuple((PARENTS[child], child) for child in range(1, NUM_JOINTS))
NUM_LIMBS = len(LIMBS)
LIMB_PARENTS = np.array([p for p, _ in LIMBS], dtype=np.int32)
LIMB_CHILDREN = np.array([c for _, c in LIMBS], dtype=np.int32)
NUM_GRAPH_NODES = NUM_JOINTS + NUM_LIMBS


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_JOINTS))
    for left, right in zip(JOINTS_LEFT, JOINTS_RIGHT, strict=True):
        perm[left], perm[right] = right, left
    return tuple(perm)


# Index map that swaps every left joint with its right counterpart; an involution.
FLIP_PERMUTATION = _flip_permutation()
_FLIP_ARRAY = np.asarray(FLIP_PERMUTATION)
_FLIP_SIGN = np.asarray([-1.0, 1.0, 1.0], np.float32)


def flip_poses(poses):
    """Mirrors (..., 17, C) poses (C = 2 or 3) left-right: x negated, left and right joints
    swapped. numpy in -> numpy out; jax in -> jax out. Applying it twice is the identity."""
    if isinstance(poses, np.ndarray):
        # One copy: take along the joint axis is faster than fancy indexing, then negate in place.
        out = np.take(poses, _FLIP_ARRAY, axis=-2)
        out[..., 0] *= -1
        return out
    return poses[..., _FLIP_ARRAY, :] * _FLIP_SIGN[: poses.shape[-1]]


def limb_vectors(joints):
    """Bone vectors child - parent, (..., 17, C) -> (..., 16, C); numpy or jax arrays."""
    return joints[..., LIMB_CHILDREN, :] - joints[..., LIMB_PARENTS, :]


def graph_adjacency() -> np.ndarray:
    """Adjacency of the 33-node joint+limb graph: nodes 0..16 are joints, 17..32 limbs.

    A limb node is connected to the two joints it joins; joints are not connected to each other
    directly, so two joints that share a bone are two hops apart.
    """
    adjacency = np.zeros((NUM_GRAPH_NODES, NUM_GRAPH_NODES), dtype=bool)
    for limb, (parent, child) in enumerate(LIMBS):
        node = NUM_JOINTS + limb
        for joint in (parent, child):
            adjacency[node, joint] = adjacency[joint, node] = True
    return adjacency


def graph_hop_distances() -> np.ndarray:
    """All-pairs hop distances (33, 33) int32 in the joint+limb graph, by breadth-first search."""
    adjacency = graph_adjacency()
    distances = np.full((NUM_GRAPH_NODES, NUM_GRAPH_NODES), -1, dtype=np.int32)
    for source in range(NUM_GRAPH_NODES):
        distances[source, source] = 0
        queue = collections.deque([source])
        while queue:
            node = queue.popleft()
            for neighbour in np.flatnonzero(adjacency[node]):
                if distances[source, neighbour] < 0:
                    distances[source, neighbour] = distances[source, node] + 1
                    queue.append(neighbour)
    return distances


# COCO-17 keypoint order (as output by COCO-trained 2D detectors).
COCO_NAMES = (
    "nose",
    "leye",
    "reye",
    "lear",
    "rear",
    "lshoulder",
    "rshoulder",
    "lelbow",
    "relbow",
    "lwrist",
    "rwrist",
    "lhip",
    "rhip",
    "lknee",
    "rknee",
    "lankle",
    "rankle",
)
# H36M joints that have a direct COCO counterpart.
_COCO_DIRECT = {
    1: 12,  # rhip
    2: 14,  # rknee
    3: 16,  # rankle
    4: 11,  # lhip
    5: 13,  # lknee
    6: 15,  # lankle
    9: 0,  # neck/nose <- nose: H36M's joint 9 sits at the nose in image space
    11: 5,  # lshoulder
    12: 7,  # lelbow
    13: 9,  # lwrist
    14: 6,  # rshoulder
    15: 8,  # relbow
    16: 10,  # rwrist
}
# How far the head top lies beyond the centre of the eyes and ears, as a fraction of the
# thorax -> head-centre distance: the H36M head joint is the top of the skull, roughly half a
# neck length above eye level.
HEAD_EXTENSION = 0.5


def coco_to_h36m(keypoints, scores=None):
    """Converts COCO-17 keypoints (..., 17, C) to the H36M-17 layout (..., 17, C).

    Joints without a COCO counterpart are derived:
      hip (0)    = midpoint of the two hips;
      thorax (8) = midpoint of the two shoulders;
      spine (7)  = midpoint of hip and thorax;
      head (10)  = c + HEAD_EXTENSION * (c - thorax), c = mean of both eyes and both ears.
    A derived joint's score is the minimum of the scores it was built from: it is only as
    reliable as its least reliable source.

    Args:
      keypoints: (..., 17, C) numpy array in COCO order, C = 2 (pixels) or 3.
      scores: optional (..., 17) confidences in COCO order.

    Returns:
      The H36M-order keypoints, and the H36M-order scores when `scores` is given.
    """
    keypoints = np.asarray(keypoints)
    keypoints = keypoints.astype(np.result_type(keypoints, np.float32))
    if keypoints.ndim < 2 or keypoints.shape[-2] != 17:
        raise ValueError(f"COCO keypoints must have shape (..., 17, C), got {keypoints.shape}")
    out = np.zeros_like(keypoints)
    for h36m, coco in _COCO_DIRECT.items():
        out[..., h36m, :] = keypoints[..., coco, :]
    out[..., 0, :] = 0.5 * (keypoints[..., 11, :] + keypoints[..., 12, :])
    out[..., 8, :] = 0.5 * (keypoints[..., 5, :] + keypoints[..., 6, :])
    out[..., 7, :] = 0.5 * (out[..., 0, :] + out[..., 8, :])
    head_centre = keypoints[..., 1:5, :].mean(axis=-2)
    out[..., 10, :] = head_centre + HEAD_EXTENSION * (head_centre - out[..., 8, :])
    if scores is None:
        return out
    scores = np.asarray(scores)
    if scores.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"scores shape {scores.shape} does not match keypoints shape {keypoints.shape[:-1]}"
        )
    out_scores = np.zeros_like(scores)
    for h36m, coco in _COCO_DIRECT.items():
        out_scores[..., h36m] = scores[..., coco]
    hips = np.minimum(scores[..., 11], scores[..., 12])
    shoulders = np.minimum(scores[..., 5], scores[..., 6])
    out_scores[..., 0] = hips
    out_scores[..., 8] = shoulders
    out_scores[..., 7] = np.minimum(hips, shoulders)
    out_scores[..., 10] = np.minimum(scores[..., 1:5].min(axis=-1), shoulders)
    return out, out_scores
