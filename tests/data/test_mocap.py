"""Motion capture in: BVH and ASF/AMC readers, rig maps, placement and checks, on small files
written here (hand-computed forward kinematics; a synthetic walker for the rest)."""

import json

import numpy as np
import pytest

from gentg_jax.data import mocap
from gentg_jax.data.mocap import rigs
from tests.data.mocap_files import (
    BANDAI,
    CC_BASE,
    GENERIC,
    GENERIC_MAP,
    bvh_text,
    walk_channels,
    write_cmu_asf_amc,
)

# --------------------------------------------------------------- hand-computed kinematics

TWO_BONES = """HIERARCHY
ROOT Hips
{
  OFFSET 0 100 0
  CHANNELS 6 Zposition Xposition Yposition Zrotation Xrotation Yrotation
  JOINT Knee
  {
    OFFSET 0 -10 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    End Site
    {
      OFFSET 0 -5 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.02
3 1 2 90 0 0 90 0 0
0 0 0 90 90 0 0 90 90
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bvh_forward_kinematics_by_hand(tmp_path):
    motion = mocap.read_bvh(_write(tmp_path, "two.bvh", TWO_BONES))
    assert motion.names == ("Hips", "Knee", "Knee_end") and motion.frame_time == 0.02
    positions, _ = mocap.forward_kinematics(motion)
    # Frame 0: root at OFFSET + (x, y, z) = (1, 102, 3) (channels come as z, x, y); Rz(90)
    # turns the knee's (0, -10, 0) into (10, 0, 0); the knee's Rx(90) turns (0, -5, 0) into
    # (0, 0, -5), which Rz(90) keeps.
    np.testing.assert_allclose(positions[0], [[1, 102, 3], [11, 102, 3], [11, 102, -2]], atol=1e-9)
    # Frame 1: root R = Rz(90) Rx(90) (listed order): (0, -10, 0) -> (0, 0, -10); the knee's
    # R = Rx(0) Ry(90) Rz(90): (0, -5, 0) -> (5, 0, 0) -> (0, 0, -5), then the root's -> (-5, 0, 0).
    np.testing.assert_allclose(
        positions[1], [[0, 100, 0], [0, 100, -10], [-5, 100, -10]], atol=1e-9
    )


ASF = """:version 1.10
:name hand
:units
  mass 1.0
  length 0.5
  angle {angle}
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name thigh
     direction 0 0 1
     length 4
     axis 0 0 {quarter} XYZ
    dof rx ry rz
    limits (-160.0 20.0)
           (-70.0 70.0)
           (-60.0 70.0)
  end
  begin
     id 2
     name shin
     direction 0 -2 0
     length 3
     axis 0 0 0 XYZ
    dof rx
    limits (-10.0 170.0)
  end
:hierarchy
  begin
    root thigh
    thigh shin
  end
"""
AMC = """#!OML:ASF hand.asf
:FULLY-SPECIFIED
{unit}
1
root 1 2 3 0 0 0
thigh 0 0 0
shin 0
2
root 0 0 0 0 0 {quarter}
thigh {quarter} 0 0
shin {quarter}
"""


@pytest.mark.parametrize(
    "angle,unit,quarter", [("deg", ":DEGREES", "90"), ("rad", "", "1.5707963267948966")]
)
def test_asf_amc_forward_kinematics_by_hand(tmp_path, angle, unit, quarter):
    asf = _write(tmp_path, "hand.asf", ASF.format(angle=angle, quarter=quarter))
    amc = _write(tmp_path, "hand_01.amc", AMC.format(unit=unit, quarter=quarter))
    motion = mocap.read_asf_amc(asf, amc)
    positions, _ = mocap.forward_kinematics(motion)
    assert motion.names == ("root", "thigh", "shin") and motion.frame_time is None
    # Lengths are divided by `:units length` 0.5: thigh 8 along +z, shin 6 along -y.
    np.testing.assert_allclose(positions[0], [[2, 4, 6], [2, 4, 14], [2, -2, 14]], atol=1e-9)
    # Frame 2: the root turns Rz(90). The thigh's rx acts about its local x, which `axis 0 0 90`
    # points along world y: Ry(90) takes (0, 0, 8) to (8, 0, 0), the root's Rz(90) to (0, 8, 0).
    # The shin's Rx(90) takes (0, -6, 0) to (0, 0, -6); Ry(90) then Rz(90) take it to (0, -6, 0).
    np.testing.assert_allclose(positions[1], [[0, 0, 0], [0, 8, 0], [0, 2, 0]], atol=1e-9)


def test_asf_amc_errors_name_file_and_line(tmp_path):
    asf = _write(tmp_path, "hand.asf", ASF.format(angle="deg", quarter="90"))
    amc = _write(
        tmp_path, "hand_01.amc", AMC.format(unit="", quarter="90").replace("shin 90\n", "")
    )
    with pytest.raises(ValueError, match=r"hand_01.amc:8: frame 1 has no values for bone 'shin'"):
        mocap.read_asf_amc(asf, amc)
    bad = _write(
        tmp_path, "bad.asf", ASF.format(angle="deg", quarter="90").replace("dof rx\n", "dof tx\n")
    )
    with pytest.raises(ValueError, match=r"bad.asf:\d+: unsupported dof"):
        mocap.read_asf_amc(bad, amc)


# ------------------------------------------------------ a synthetic walker (mocap_files.py)


@pytest.fixture(scope="module")
def walk_file(tmp_path_factory):
    rot, root = walk_channels(100)
    path = tmp_path_factory.mktemp("walk") / "walk.bvh"
    path.write_text(bvh_text({n: n for n in GENERIC}, rot, root))
    return path


@pytest.fixture(scope="module")
def walk_clip(walk_file):
    return mocap.load_clip(walk_file, GENERIC_MAP)


def test_walker_clip_is_z_up_metres_at_50_fps(walk_clip):
    p = walk_clip.positions_world
    assert p.shape == (100, 17, 3) and p.dtype == np.float32 and walk_clip.fps == 50
    np.testing.assert_allclose(p[0, 0], [0, 0, 0.95], atol=1e-6)  # y-up cm (0, 95, 0)
    np.testing.assert_allclose(p[-1, 0, :2], [0, -1.98], atol=1e-6)  # 1.98 s at 1 m/s along +z
    assert np.all(p[:, 10, 2] > p[:, 8, 2]) and np.all(p[:, 8, 2] > p[:, 0, 2])  # head up
    assert np.all(p[:, 4, 0] > p[:, 1, 0])  # left hip at +x, as in the file


def test_units_and_up_axis_are_equivalent(tmp_path, walk_clip):
    rot, root = walk_channels(100)
    metres = _write(tmp_path, "m.bvh", bvh_text({n: n for n in GENERIC}, rot, root, scale=0.01))
    z_up = _write(tmp_path, "z.bvh", bvh_text({n: n for n in GENERIC}, rot, root, z_up=True))
    # A head offset is in the head's own frame and the file's unit: it changes with them.
    head = {"length_unit_m": 1.0}, {"point": "head", "offset": [0, 0.12, 0.02]}
    changes = ((metres, *head), (z_up, {"up_axis": "z"}, {"point": "head", "offset": [0, -2, 12]}))
    for path, change, head_point in changes:
        joints = {**GENERIC_MAP["joints"], "head": head_point}
        clip = mocap.load_clip(path, {**GENERIC_MAP, **change, "joints": joints})
        np.testing.assert_allclose(clip.positions_world, walk_clip.positions_world, atol=1e-5)


def test_resampling_to_50_fps(tmp_path):
    rot, root = walk_channels(26, fps=25.0)  # one second at 25 fps
    path = _write(tmp_path, "slow.bvh", bvh_text({n: n for n in GENERIC}, rot, root, 0.04))
    clip = mocap.load_clip(path, GENERIC_MAP)
    assert clip.num_frames == 51 and clip.source_fps == 25 and clip.source_frames == 26
    fast = mocap.load_clip(path, GENERIC_MAP, fps=50.0)  # an override wins over Frame Time
    assert fast.num_frames == 26
    # The root translation is interpolated linearly: new frame 2k+1 is the mean of old k, k+1.
    old = fast.positions_world[:, 0]
    np.testing.assert_allclose(clip.positions_world[1::2, 0], (old[:-1] + old[1:]) / 2, atol=1e-6)
    np.testing.assert_allclose(clip.positions_world[::2], fast.positions_world, atol=1e-5)
    # Rotations are interpolated, not positions: the shin keeps its length between frames.
    assert mocap.limb_length_variation(clip.positions_world.astype(float)).max() < 1e-5


def test_implausible_frame_time_needs_an_override(tmp_path):
    rot, root = walk_channels(60)
    path = _write(tmp_path, "zero.bvh", bvh_text({n: n for n in GENERIC}, rot, root, 0.0))
    with pytest.raises(ValueError, match=r"zero.bvh: implausible Frame Time 0.0 s.*fps="):
        mocap.load_clip(path, GENERIC_MAP)
    assert mocap.load_clip(path, GENERIC_MAP, fps=50).num_frames == 60


@pytest.mark.parametrize("rig,names", [("bandai", BANDAI), ("cc_base", CC_BASE)])
def test_builtin_bvh_rig_maps_resolve(tmp_path, rig, names):
    rot, root = walk_channels(80)
    path = _write(tmp_path, f"{rig}.bvh", bvh_text(names, rot, root))
    clip = mocap.load_clip(path, rig)
    dropped = rigs.rig_map(rig).drop_first_frames
    assert clip.num_frames == 80 - dropped and clip.rig == rig
    assert np.isfinite(clip.positions_world).all()
    assert clip.toes_world.shape == (clip.num_frames, 2, 3)
    assert mocap.clip_problems(clip) == []


def test_builtin_cmu_asf_map_resolves(tmp_path):
    amc = write_cmu_asf_amc(tmp_path, num_frames=130)
    clip = mocap.load_clip(amc, "cmu")  # finds 07.asf beside 07_01.amc
    assert clip.source_fps == 120 and clip.num_frames == 54 and clip.rig == "cmu"
    # lfemur length 7 / 0.45 inches; the root at 40 / 0.45 inches above the file origin.
    thigh = np.linalg.norm(clip.positions_world[:, 5] - clip.positions_world[:, 4], axis=-1)
    np.testing.assert_allclose(thigh, 7 / 0.45 * 0.0254, rtol=1e-5)
    np.testing.assert_allclose(clip.positions_world[0, 0, 2], 40 / 0.45 * 0.0254, rtol=1e-5)
    assert mocap.clip_problems(clip) == []


def test_user_json_map_and_missing_joint_errors(tmp_path, walk_file):
    good = _write(tmp_path, "generic.json", json.dumps(GENERIC_MAP))
    assert mocap.load_clip(walk_file, str(good)).rig == "generic"
    broken = json.loads(json.dumps(GENERIC_MAP))
    broken["joints"]["lknee"] = "LeftKnee"
    with pytest.raises(ValueError, match=r"walk.bvh: rig map 'generic' needs point 'LeftKnee'"):
        mocap.load_clip(walk_file, str(_write(tmp_path, "broken.json", json.dumps(broken))))
    del broken["joints"]["lknee"]
    with pytest.raises(ValueError, match=r"incomplete.json: .*missing H36M joints \['lknee'\]"):
        mocap.rig_map(str(_write(tmp_path, "incomplete.json", json.dumps(broken))))


# ------------------------------------------------------------------ placement and the checks


def test_place_clip_floor_share_and_determinism(walk_clip):
    placed, info = mocap.place_clip(walk_clip, "S9")
    again, info_again = mocap.place_clip(walk_clip, "S9")
    np.testing.assert_array_equal(placed, again)
    np.testing.assert_array_equal(info["translation_m"], info_again["translation_m"])
    assert {k: v for k, v in info.items() if k != "translation_m"} == {
        k: v for k, v in info_again.items() if k != "translation_m"
    }
    assert info["in_image_share"] == 1.0 and info["min_margin_px"] > 0
    toes = mocap.apply_placement(walk_clip.toes_world, info)
    assert abs(np.percentile(toes[..., 2].min(axis=1), 2)) < 1e-5  # floor at z = 0
    np.testing.assert_allclose(mocap.in_image_share(placed, "S9"), 1.0)
    # Rigid: the placed clip keeps every distance (a rotation about z plus a shift).
    np.testing.assert_allclose(
        np.linalg.norm(placed[:, 10] - placed[:, 3], axis=-1),
        np.linalg.norm(walk_clip.positions_world[:, 10] - walk_clip.positions_world[:, 3], axis=-1),
        atol=1e-5,
    )
    far = mocap.apply_placement(walk_clip.positions_world, {**info, "translation_m": [20, 0, 0]})
    assert mocap.in_image_share(far, "S9") == 0.0


def test_long_walk_is_cut_into_pieces_that_fit(tmp_path):
    rot, root = walk_channels(500, speed_cm=150.0)  # 7.5 m: more than the volume holds
    path = _write(tmp_path, "long.bvh", bvh_text({n: n for n in GENERIC}, rot, root))
    clip = mocap.load_clip(path, GENERIC_MAP)
    pieces = mocap.place_segments(clip, "S1")
    assert len(pieces) >= 3 and sum(p.num_frames for p, _, _ in pieces) == clip.num_frames
    assert [p.name for p, _, _ in pieces][:2] == ["long_part1", "long_part2"]
    assert all(info["in_image_share"] == 1.0 for _, _, info in pieces)


def test_checks_reject_a_left_right_swapped_map(walk_file, walk_clip):
    assert mocap.clip_problems(walk_clip) == []
    swap = {"l": "r", "r": "l"}
    mirrored = json.loads(json.dumps(GENERIC_MAP))
    for joint, point in list(mirrored["joints"].items()):
        if isinstance(point, str) and point in GENERIC and point[0] in swap:
            mirrored["joints"][joint] = swap[point[0]] + point[1:]
    mirrored["toes"] = {"left": "rtoe", "right": "ltoe"}
    clip = mocap.load_clip(walk_file, mirrored)
    with pytest.raises(ValueError, match=r"walk.bvh: left/right swapped or mirrored rig\?") as e:
        mocap.check_clip(clip)
    assert "knees bending forward" in str(e.value) and "toes" in str(e.value)


def test_checks_reject_broken_files(tmp_path):
    rot, root = walk_channels(60)
    text = bvh_text({n: n for n in GENERIC}, rot, root)
    truncated = _write(tmp_path, "cut.bvh", text.rsplit("\n", 2)[0] + "\n")
    with pytest.raises(ValueError, match=r"cut.bvh:\d+: MOTION declares 60 frames but has 59"):
        mocap.load_clip(truncated, GENERIC_MAP)
    short_line = _write(tmp_path, "short.bvh", text.rsplit(" ", 1)[0] + "\n")
    with pytest.raises(ValueError, match=r"short.bvh:\d+: frame 59 has \d+ values, expected"):
        mocap.load_clip(short_line, GENERIC_MAP)
    lines = text.splitlines()
    lines[-5] = " ".join(["nan"] + lines[-5].split()[1:])
    clip = mocap.load_clip(_write(tmp_path, "nan.bvh", "\n".join(lines) + "\n"), GENERIC_MAP)
    with pytest.raises(ValueError, match=r"nan.bvh: \d+ non-finite values") as e:
        mocap.check_clip(clip)
    assert "\n" not in str(e.value)
    few_text = bvh_text({n: n for n in GENERIC}, *walk_channels(29))
    few = mocap.load_clip(_write(tmp_path, "few.bvh", few_text), GENERIC_MAP)
    assert mocap.clip_problems(few) == [f"{few.path}: 29 frames at 50 fps, need 50"]


def test_checks_reject_a_stretching_bone(tmp_path, walk_clip):
    assert mocap.limb_length_variation(walk_clip.positions_world.astype(float)).max() < 1e-5
    rot, root = walk_channels(60)
    text = bvh_text({n: n for n in GENERIC}, rot, root)
    # Give the left shin position channels that grow from 41 to 45 cm (replacing its OFFSET).
    head, motion = text.split("MOTION\n")
    at = head.index("CHANNELS 3", head.index("JOINT lankle"))
    head = head[:at] + "CHANNELS 6 Xposition Yposition Zposition" + head[at + len("CHANNELS 3") :]
    rows = motion.splitlines()
    column = 6 + 3 * (GENERIC.index("lankle") - 1)  # root: 6 channels, then 3 a joint
    for k in range(2, len(rows)):
        values = rows[k].split()
        values[column:column] = ["0", f"{-41 - 4 * (k - 2) / 59:.4f}", "0"]
        rows[k] = " ".join(values)
    path = _write(tmp_path, "stretch.bvh", head + "MOTION\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"stretch.bvh: limb lknee->lankle length varies by 9"):
        mocap.check_clip(mocap.load_clip(path, GENERIC_MAP))


def test_bvh_syntax_errors_are_one_line(tmp_path):
    text = TWO_BONES.replace("OFFSET 0 -10 0", "OFFSET 0 -10")
    with pytest.raises(ValueError, match=r"bad.bvh:8: OFFSET needs 3 numbers, got 2"):
        mocap.read_bvh(_write(tmp_path, "bad.bvh", text))
    with pytest.raises(ValueError, match=r"ch.bvh:5: unknown channel\(s\) \['Wrotation'\]"):
        mocap.read_bvh(
            _write(tmp_path, "ch.bvh", TWO_BONES.replace("Zrotation Xrot", "Wrotation Xrot"))
        )
