"""The H36M-17 skeleton: flips, limb tree, joint+limb graph distances, COCO-17 conversion."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gentg_jax import skeleton

# DESIGN.md, "Conventions", written out again so the module is checked against the spec.
DESIGN_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15]


def _mirror_name(name):
    if name.startswith("l"):
        return "r" + name[1:]
    if name.startswith("r"):
        return "l" + name[1:]
    return name


def test_layout_matches_design():
    assert skeleton.NUM_JOINTS == len(skeleton.JOINT_NAMES) == 17
    assert list(skeleton.PARENTS) == DESIGN_PARENTS
    assert skeleton.JOINTS_LEFT == (4, 5, 6, 11, 12, 13)
    assert skeleton.JOINTS_RIGHT == (1, 2, 3, 14, 15, 16)
    for left, right in zip(skeleton.JOINTS_LEFT, skeleton.JOINTS_RIGHT, strict=True):
        assert skeleton.JOINT_NAMES[left].startswith("l")
        assert skeleton.JOINT_NAMES[right] == _mirror_name(skeleton.JOINT_NAMES[left])


def test_flip_is_an_involution_that_swaps_sides():
    perm = np.asarray(skeleton.FLIP_PERMUTATION)
    np.testing.assert_array_equal(perm[perm], np.arange(17))
    for joint, name in enumerate(skeleton.JOINT_NAMES):
        assert skeleton.JOINT_NAMES[perm[joint]] == _mirror_name(name)
    for centre in (0, 7, 8, 9, 10):
        assert perm[centre] == centre
    # Mirroring a pose (x -> -x plus the relabelling) twice gives it back, and moves the left
    # wrist's coordinates to the right wrist.
    pose = np.random.default_rng(0).normal(size=(2, 17, 3))
    flipped = pose[..., perm, :] * [-1, 1, 1]
    np.testing.assert_array_equal(flipped[..., perm, :] * [-1, 1, 1], pose)
    np.testing.assert_array_equal(flipped[:, 16], pose[:, 13] * [-1, 1, 1])


def test_limbs_form_a_tree_rooted_at_the_hip():
    assert skeleton.NUM_LIMBS == len(skeleton.LIMBS) == 16
    for i, (parent, child) in enumerate(skeleton.LIMBS):
        assert child == i + 1 and parent == DESIGN_PARENTS[child]
    np.testing.assert_array_equal(skeleton.LIMB_PARENTS, [p for p, _ in skeleton.LIMBS])
    np.testing.assert_array_equal(skeleton.LIMB_CHILDREN, [c for _, c in skeleton.LIMBS])
    children = [c for _, c in skeleton.LIMBS]
    assert sorted(children) == list(range(1, 17))  # every non-root joint has one parent
    reached, frontier = {skeleton.ROOT}, [skeleton.ROOT]
    while frontier:
        joint = frontier.pop()
        for parent, child in skeleton.LIMBS:
            if parent == joint and child not in reached:
                reached.add(child)
                frontier.append(child)
    assert reached == set(range(17))  # 17 nodes, 16 edges, connected: a tree


def test_limb_vectors():
    joints = np.random.default_rng(1).normal(size=(3, 17, 3))
    bones = skeleton.limb_vectors(joints)
    assert bones.shape == (3, 16, 3)
    for i, (parent, child) in enumerate(skeleton.LIMBS):
        np.testing.assert_array_equal(bones[:, i], joints[:, child] - joints[:, parent])


def _floyd_warshall():
    """Hop distances computed independently from the DESIGN parents: limb node 17 + (c - 1)."""
    n = 33
    dist = np.full((n, n), np.inf)
    np.fill_diagonal(dist, 0)
    for child in range(1, 17):
        limb = 16 + child
        for joint in (DESIGN_PARENTS[child], child):
            dist[joint, limb] = dist[limb, joint] = 1
    for k, i, j in itertools.product(range(n), repeat=3):
        dist[i, j] = min(dist[i, j], dist[i, k] + dist[k, j])
    return dist


def test_graph_hop_distances():
    hops = skeleton.graph_hop_distances()
    assert hops.shape == (33, 33) and hops.dtype == np.int32
    np.testing.assert_array_equal(hops, hops.T)
    np.testing.assert_array_equal(np.diag(hops), 0)
    np.testing.assert_array_equal(hops, _floyd_warshall())
    for limb, (parent, child) in enumerate(skeleton.LIMBS):
        node = 17 + limb
        assert hops[parent, node] == hops[child, node] == 1
        assert hops[parent, child] == 2  # joint -> limb -> joint
    # lwrist -> lelbow -> lshoulder -> thorax -> rshoulder -> relbow -> rwrist: 6 bones.
    assert hops[1, 2] == 2 and hops[0, 3] == 6 and hops[13, 16] == 12
    # Joints are never adjacent to joints, limbs never to limbs: parity of the bipartite graph.
    assert np.all(hops[:17, :17] % 2 == 0) and np.all(hops[17:, 17:] % 2 == 0)
    np.testing.assert_array_equal(skeleton.graph_adjacency(), hops == 1)


# A hand-built standing figure in pixels, COCO order.
COCO_POSE = np.array(
    [
        [100, 50],  # nose
        [105, 45],  # leye
        [95, 45],  # reye
        [110, 48],  # lear
        [90, 48],  # rear
        [120, 80],  # lshoulder
        [80, 80],  # rshoulder
        [130, 110],  # lelbow
        [70, 110],  # relbow
        [135, 140],  # lwrist
        [65, 140],  # rwrist
        [112, 150],  # lhip
        [88, 150],  # rhip
        [114, 200],  # lknee
        [86, 200],  # rknee
        [115, 250],  # lankle
        [85, 250],  # rankle
    ],
    dtype=np.float32,
)
COCO_SCORES = np.array(
    [0.9, 0.8, 0.85, 0.7, 0.75, 0.6, 0.65, 0.5, 0.55, 0.4, 0.45, 0.3, 0.35, 0.2, 0.25, 0.1, 0.15],
    dtype=np.float32,
)
# Expected H36M joints: head centre = mean of eyes and ears = (100, 46.5); thorax = (100, 80);
# head = centre + 0.5 * (centre - thorax) = (100, 29.75).
EXPECTED_H36M = np.array(
    [
        [100, 150],  # hip: midpoint of the hips
        [88, 150],  # rhip
        [86, 200],  # rknee
        [85, 250],  # rankle
        [112, 150],  # lhip
        [114, 200],  # lknee
        [115, 250],  # lankle
        [100, 115],  # spine: midpoint of hip and thorax
        [100, 80],  # thorax: midpoint of the shoulders
        [100, 50],  # neck/nose: the nose
        [100, 29.75],  # head
        [120, 80],  # lshoulder
        [130, 110],  # lelbow
        [135, 140],  # lwrist
        [80, 80],  # rshoulder
        [70, 110],  # relbow
        [65, 140],  # rwrist
    ],
    dtype=np.float32,
)
# Derived joints take the weakest source score: hip min(0.3, 0.35), thorax min(0.6, 0.65),
# spine min(hip, thorax), head min(eyes and ears 0.7, thorax 0.6).
EXPECTED_SCORES = np.array(
    [0.3, 0.35, 0.25, 0.15, 0.3, 0.2, 0.1, 0.3, 0.6, 0.9, 0.6, 0.6, 0.5, 0.4, 0.65, 0.55, 0.45],
    dtype=np.float32,
)


def test_coco_to_h36m_known_pose():
    assert skeleton.COCO_NAMES[0] == "nose" and len(skeleton.COCO_NAMES) == 17
    keypoints, scores = skeleton.coco_to_h36m(COCO_POSE, COCO_SCORES)
    for joint, name in enumerate(skeleton.JOINT_NAMES):
        np.testing.assert_allclose(keypoints[joint], EXPECTED_H36M[joint], err_msg=name)
        assert scores[joint] == pytest.approx(EXPECTED_SCORES[joint]), name
    assert skeleton.coco_to_h36m(COCO_POSE).shape == (17, 2)


def test_coco_to_h36m_batched_and_errors():
    batch = np.stack([COCO_POSE, COCO_POSE + 10])[:, None]  # (2, 1, 17, 2)
    keypoints, scores = skeleton.coco_to_h36m(batch, np.broadcast_to(COCO_SCORES, (2, 1, 17)))
    np.testing.assert_allclose(keypoints[0, 0], EXPECTED_H36M)
    np.testing.assert_allclose(keypoints[1, 0], EXPECTED_H36M + 10)
    np.testing.assert_allclose(scores[1, 0], EXPECTED_SCORES)
    with pytest.raises(ValueError, match="17"):
        skeleton.coco_to_h36m(np.zeros((16, 2)))
    with pytest.raises(ValueError, match="scores shape"):
        skeleton.coco_to_h36m(COCO_POSE, np.ones(16))


def test_flip_poses_mirrors_x_and_swaps_sides_for_numpy_and_jax():
    rng = np.random.default_rng(0)
    poses = rng.normal(size=(2, 5, 17, 3)).astype(np.float32)
    flipped = skeleton.flip_poses(poses)
    assert isinstance(flipped, np.ndarray)
    for left, right in zip(skeleton.JOINTS_LEFT, skeleton.JOINTS_RIGHT, strict=True):
        np.testing.assert_array_equal(flipped[..., left, 0], -poses[..., right, 0])
        np.testing.assert_array_equal(flipped[..., right, 1:], poses[..., left, 1:])
    np.testing.assert_array_equal(skeleton.flip_poses(flipped), poses)
    on_device = skeleton.flip_poses(jnp.asarray(poses[..., :2]))  # 2D keypoints too
    assert isinstance(on_device, jax.Array)
    np.testing.assert_array_equal(on_device, flipped[..., :2])
