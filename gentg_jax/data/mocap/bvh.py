"""BVH reader: HIERARCHY and MOTION -> forward kinematics of every joint and End Site."""

from __future__ import annotations

import pathlib

import numpy as np

from gentg_jax.data.mocap.kinematics import AXES, Motion, euler_matrix, parse_error, parse_floats


def _parse_bvh_hierarchy(path, lines: list[str]):
    """Joints (name, parent, offset, channels) and the line index where MOTION starts."""
    joints, stack, pending = [], [], None
    for i, line in enumerate(lines):
        tokens = line.split()
        if not tokens or tokens[0] == "HIERARCHY":
            continue
        key = tokens[0]
        if key in ("ROOT", "JOINT") or (key == "End" and tokens[1:2] == ["Site"]):
            if key != "ROOT" and not stack:
                raise parse_error(path, i + 1, f"{key} outside a ROOT block")
            if key != "End" and len(tokens) != 2:
                raise parse_error(path, i + 1, f"{key} needs one name, got {tokens[1:]}")
            parent = stack[-1] if stack else -1
            name = tokens[1] if key != "End" else f"{joints[parent]['name']}_end"
            if any(j["name"] == name for j in joints):
                raise parse_error(path, i + 1, f"duplicate joint name {name!r}")
            pending = {"name": name, "parent": parent, "offset": None, "channels": ()}
            joints.append(pending)
        elif key == "{":
            if pending is None:
                raise parse_error(path, i + 1, "'{' without a ROOT/JOINT/End Site before it")
            stack.append(len(joints) - 1)
            pending = None
        elif key == "}":
            if not stack:
                raise parse_error(path, i + 1, "unbalanced '}'")
            if joints[stack[-1]]["offset"] is None:
                raise parse_error(path, i + 1, f"joint {joints[stack[-1]]['name']} has no OFFSET")
            stack.pop()
        elif key == "OFFSET":
            if not stack:
                raise parse_error(path, i + 1, "OFFSET outside a joint")
            joints[stack[-1]]["offset"] = parse_floats(path, i + 1, tokens[1:], 3, "OFFSET")
        elif key == "CHANNELS":
            channels = tuple(tokens[2:])
            if not stack or len(tokens) < 2 or str(len(channels)) != tokens[1]:
                raise parse_error(path, i + 1, f"bad CHANNELS line {line.strip()!r}")
            bad = [
                c for c in channels if c[1:] not in ("position", "rotation") or c[0] not in "XYZ"
            ]
            if bad:
                raise parse_error(path, i + 1, f"unknown channel(s) {bad}")
            joints[stack[-1]]["channels"] = channels
        elif key == "MOTION":
            if stack or not joints:
                raise parse_error(path, i + 1, "MOTION before the HIERARCHY is complete")
            return joints, i
        else:
            raise parse_error(path, i + 1, f"unexpected {key!r} in HIERARCHY")
    raise parse_error(path, max(len(lines), 1), "no MOTION section")


def _parse_bvh_motion(path, lines: list[str], start: int, num_channels: int):
    """(frames (F, C) float64, frame time) from the MOTION block that starts at lines[start]."""
    body = [(n, line) for n, line in enumerate(lines[start + 1 :], start + 2) if line.strip()]
    header = {}
    for k, key in enumerate(("Frames:", "Frame Time:")):
        line_no, line = body[k] if k < len(body) else (len(lines), "")
        if not line.strip().startswith(key):
            raise parse_error(path, line_no, f"expected {key!r}, got {line.strip()!r}")
        try:
            header[key] = float(line.split(":", 1)[1])
        except ValueError:
            raise parse_error(path, line_no, f"bad value in {line.strip()!r}") from None
    num_frames, rows = int(header["Frames:"]), body[2:]
    if num_frames != header["Frames:"] or num_frames < 0:
        raise parse_error(path, body[0][0], f"bad frame count {header['Frames:']}")
    if len(rows) != num_frames:
        raise parse_error(
            path,
            len(lines),
            f"MOTION declares {num_frames} frames but has {len(rows)} (truncated?)",
        )
    values = [line.split() for _, line in rows]
    for k, row in enumerate(values):
        if len(row) != num_channels:
            raise parse_error(
                path, rows[k][0], f"frame {k} has {len(row)} values, expected {num_channels}"
            )
    try:
        frames = np.asarray(values, dtype=np.float64).reshape(num_frames, num_channels)
    except ValueError:
        raise parse_error(path, rows[0][0], "non-number in the MOTION data") from None
    return frames, header["Frame Time:"]


def read_bvh(path) -> Motion:
    """Reads a BVH file into a `Motion` (run `forward_kinematics` for world positions).

    Any channel order per joint is accepted; rotation channels multiply in the listed order
    (`euler_matrix`). Position channels are added to the ROOT's OFFSET (the exporters of the CMU
    CC_Base files keep the rest hip height there) and replace the OFFSET components they name on
    other joints (the Bandai-Namco files repeat the OFFSET in them). End Sites are points
    "<joint>_end".

    Raises:
      ValueError: one line naming the file and line for a malformed file.
    """
    lines = pathlib.Path(path).read_text().splitlines()
    joints, motion_line = _parse_bvh_hierarchy(path, lines)
    num_channels = sum(len(j["channels"]) for j in joints)
    frames, frame_time = _parse_bvh_motion(path, lines, motion_line, num_channels)
    num_frames = len(frames)
    rotations = np.zeros((num_frames, len(joints), 3, 3))
    translations = np.zeros((num_frames, len(joints), 3))
    column = 0
    for j, joint in enumerate(joints):
        channels = joint["channels"]
        values = frames[:, column : column + len(channels)]
        column += len(channels)
        translations[:, j] = joint["offset"]
        rot_cols = [k for k, c in enumerate(channels) if c.endswith("rotation")]
        for k, c in enumerate(channels):
            if c.endswith("position"):
                axis = AXES[c[0].lower()]
                base = translations[:, j, axis] if joint["parent"] < 0 else 0
                translations[:, j, axis] = values[:, k] + base
        axes = "".join(channels[k][0] for k in rot_cols)
        rotations[:, j] = euler_matrix(np.deg2rad(values[:, rot_cols]), axes)
    return Motion(
        path=str(path),
        names=tuple(j["name"] for j in joints),
        parents=tuple(j["parent"] for j in joints),
        local_rotations=rotations,
        local_translations=translations,
        end_offsets=np.zeros((len(joints), 3)),
        frame_time=frame_time,
    )
