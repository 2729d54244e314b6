"""Small motion capture files for the mocap tests: a synthetic walker written as BVH under any
rig's joint names (y up, centimetres, facing +z), and a CMU-like ASF skeleton."""

import numpy as np

from gentg_jax import skeleton

# (generic name, parent, offset in cm: y up, facing +z, the body's left at +x)
BODY = (
    ("hips", None, (0, 95, 0)),
    ("lhip", "hips", (9, -5, 0)), ("lknee", "lhip", (0, -42, 0)),
    ("lankle", "lknee", (0, -41, 0)), ("ltoe", "lankle", (0, -6, 13)),
    ("rhip", "hips", (-9, -5, 0)), ("rknee", "rhip", (0, -42, 0)),
    ("rankle", "rknee", (0, -41, 0)), ("rtoe", "rankle", (0, -6, 13)),
    ("spine", "hips", (0, 13, 0)), ("chest", "spine", (0, 13, 0)),
    ("neck", "chest", (0, 22, 0)), ("head", "neck", (0, 10, 0)),
    ("lshoulder", "chest", (17, 18, 0)), ("lelbow", "lshoulder", (0, -28, 0)),
    ("lwrist", "lelbow", (0, -25, 0)),
    ("rshoulder", "chest", (-17, 18, 0)), ("relbow", "rshoulder", (0, -28, 0)),
    ("rwrist", "relbow", (0, -25, 0)),
)  # fmt: skip
GENERIC = [name for name, _, _ in BODY]
BANDAI = dict(zip(GENERIC, [
    "Hips", "UpperLeg_L", "LowerLeg_L", "Foot_L", "Toes_L", "UpperLeg_R", "LowerLeg_R", "Foot_R",
    "Toes_R", "Spine", "Chest", "Neck", "Head", "UpperArm_L", "LowerArm_L", "Hand_L",
    "UpperArm_R", "LowerArm_R", "Hand_R"], strict=True))  # fmt: skip
CC_BASE = {g: f"CC_Base_{n}" for g, n in zip(GENERIC, [
    "Hip", "L_Thigh", "L_Calf", "L_Foot", "L_ToeBase", "R_Thigh", "R_Calf", "R_Foot",
    "R_ToeBase", "Waist", "Spine02", "NeckTwist01", "Head", "L_Upperarm", "L_Forearm", "L_Hand",
    "R_Upperarm", "R_Forearm", "R_Hand"], strict=True)}  # fmt: skip
# A user map for the generic names (what a JSON file holds).
GENERIC_MAP = {
    "name": "generic",
    "joints": {**{j: j for j in skeleton.JOINT_NAMES if j in GENERIC},
               "hip": "hips", "spine": ["spine", "chest"], "thorax": "neck", "neck_nose": "head",
               "head": {"point": "head", "offset": [0, 12, 2]}},
    "toes": {"left": "ltoe", "right": "rtoe"},
    "length_unit_m": 0.01,
    "up_axis": "y",
}  # fmt: skip


def walk_channels(num_frames, fps=50.0, speed_cm=100.0):
    """(F, J, 3) Z X Y rotation degrees and (F, 3) root position: a walk along +z."""
    t = np.arange(num_frames) / fps
    phase = 2 * np.pi * t
    rot = np.zeros((num_frames, len(BODY), 3))
    index = {name: k for k, name in enumerate(GENERIC)}
    for side, sign in (("l", 1), ("r", -1)):
        rot[:, index[side + "hip"], 1] = -25 * sign * np.sin(phase)  # thigh swings about x
        rot[:, index[side + "knee"], 1] = 5 + 30 * (1 + sign * np.sin(phase)) / 2  # foot back
        rot[:, index[side + "shoulder"], 1] = 20 * sign * np.sin(phase)
        rot[:, index[side + "elbow"], 1] = -20
    rot[:, 0, 0] = 5 * np.sin(phase)  # a little roll of the pelvis
    root = np.stack([np.zeros_like(t), 2 * np.abs(np.sin(phase)), speed_cm * t], axis=1)
    return rot, root


def bvh_text(names, rot, root, frame_time=0.02, scale=1.0, z_up=False):
    """A BVH of BODY under `names`, Y up in `scale` x cm (or Z up: (x, y, z) -> (x, -z, y))."""

    def vec(v):
        v = np.asarray(v, float) * scale
        return v if not z_up else np.array([v[0], -v[2], v[1]])

    lines, depth = ["HIERARCHY"], {}  # depth: the joints in emission (channel) order
    children = {name: [n for n, p, _ in BODY if p == name] for name, _, _ in BODY}

    def emit(name, level):
        pad = "  " * level
        parent, offset = next((p, o) for n, p, o in BODY if n == name)
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {names[name]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {' '.join(f'{x:.6f}' for x in vec(offset))}")
        rot_channels = (
            "Zrotation Xrotation Yrotation" if not z_up else "Yrotation Xrotation Zrotation"
        )
        if parent is None:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_channels}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {rot_channels}")
        for child in children[name]:
            emit(child, level + 1)
        if not children[name]:
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0 0 0", pad + "  }"])
        lines.append(pad + "}")
        depth[name] = level

    emit("hips", 0)
    # Z up maps y-up axes (x, y, z) to (x, -z, y): Rz(a) Rx(b) Ry(c) becomes Ry(-a) Rx(b) Rz(c).
    values = []
    for f in range(len(rot)):
        row = list(vec(root[f]))
        for name in depth:  # emission order = channel order
            z, x, y = rot[f, GENERIC.index(name)]
            row += [z, x, y] if not z_up else [-z, x, y]
        values.append(" ".join(f"{v:.6f}" for v in row))
    return (
        "\n".join(lines + ["MOTION", f"Frames: {len(rot)}", f"Frame Time: {frame_time}"] + values)
        + "\n"
    )


CMU_ASF_BONES = (  # name, parent, direction (y up, facing +z), length in ASF units
    ("lhipjoint", "root", (1, -1, 0), 2.0), ("lfemur", "lhipjoint", (0, -1, 0), 7.0),
    ("ltibia", "lfemur", (0, -1, 0), 7.0), ("lfoot", "ltibia", (0, -0.3, 1), 2.0),
    ("rhipjoint", "root", (-1, -1, 0), 2.0), ("rfemur", "rhipjoint", (0, -1, 0), 7.0),
    ("rtibia", "rfemur", (0, -1, 0), 7.0), ("rfoot", "rtibia", (0, -0.3, 1), 2.0),
    ("lowerback", "root", (0, 1, 0), 2.0), ("upperback", "lowerback", (0, 1, 0), 2.0),
    ("thorax", "upperback", (0, 1, 0), 2.0), ("lowerneck", "thorax", (0, 1, 0), 1.7),
    ("upperneck", "lowerneck", (0, 1, 0), 1.7), ("head", "upperneck", (0, 1, 0), 1.8),
    ("lclavicle", "thorax", (1, 0.2, 0), 3.5), ("lhumerus", "lclavicle", (0, -1, 0), 5.0),
    ("lradius", "lhumerus", (0, -1, 0), 4.0),
    ("rclavicle", "thorax", (-1, 0.2, 0), 3.5), ("rhumerus", "rclavicle", (0, -1, 0), 5.0),
    ("rradius", "rhumerus", (0, -1, 0), 4.0),
)  # fmt: skip


CMU_ASF_HEADER = """:version 1.10
:name VICON
:units
  mass 1.0
  length 0.45
  angle deg
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
"""


def write_cmu_asf_amc(folder, num_frames: int, subject: str = "07"):
    """Writes '<subject>.asf' (CMU_ASF_BONES) and a knee-bending '<subject>_01.amc' (120 fps,
    walking 0.1 inch a frame along +z); returns the AMC's path."""
    bones, tree = [], {}
    for k, (name, parent, direction, length) in enumerate(CMU_ASF_BONES, 1):
        dof = "    dof rx ry rz\n" if name.endswith(("femur", "tibia")) else ""
        bones.append(f"  begin\n     id {k}\n     name {name}\n     direction "
                     f"{' '.join(map(str, direction))}\n     length {length}\n"
                     f"     axis 0 0 0 XYZ\n{dof}  end\n")  # fmt: skip
        tree.setdefault(parent, []).append(name)
    hierarchy = "".join(f"    {p} {' '.join(c)}\n" for p, c in tree.items())
    asf = f"{CMU_ASF_HEADER}:bonedata\n{''.join(bones)}:hierarchy\n  begin\n{hierarchy}  end\n"
    (folder / f"{subject}.asf").write_text(asf)
    frames = []
    for f in range(num_frames):
        bend = 30 * (1 + np.sin(f / 20)) / 2
        frames.append(f"{f + 1}\nroot 0 40 {f / 10} 0 0 0\nlfemur {-bend} 0 0\nltibia {bend} 0 0\n"
                      f"rfemur {-bend / 2} 0 0\nrtibia {bend} 0 0\n")  # fmt: skip
    amc = folder / f"{subject}_01.amc"
    amc.write_text(":FULLY-SPECIFIED\n:DEGREES\n" + "".join(frames))
    return amc
