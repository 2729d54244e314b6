"""ASF/AMC reader (the Acclaim format of the CMU database) -> forward kinematics of bone ends.

Conventions, as the CMU files use them:
- Lengths (bone `length`, root `position`, AMC root translation) are divided by the ASF's
  `:units length` scale (CMU: 0.45, giving inches); the rig map converts that unit to metres.
- Angles are degrees unless the ASF says `:units angle rad` (or the AMC says `:RADIANS`).
- Rotations listed first act first: a bone `axis ax ay az XYZ` (angles in the order of the
  letters) is C = Rz(az) Ry(ay) Rx(ax), and AMC values for `dof rx ry rz` give M = Rz Ry Rx.
  A bone's world rotation is R = R_parent C M C^-1 (C holds the bone's local axes in the rest
  pose), and its end lies at its start (the parent's end) + R (direction * length), with
  `direction` in rest-pose axes.
- The root is a bone of length 0 at `position` + the AMC translation, with `orientation` as C
  (its order from `axis`) and the rotation order of the RX RY RZ entries of `order`.
"""

from __future__ import annotations

import pathlib

import numpy as np

from gentg_jax.data.mocap.kinematics import Motion, euler_matrix, parse_error, parse_floats

_ROTATION_DOFS = ("rx", "ry", "rz")


def _lines(path) -> list[tuple[int, list[str]]]:
    """(line number, tokens) of the non-empty lines, '#' comments removed."""
    text = pathlib.Path(path).read_text().splitlines()
    out = [(n, line.split("#", 1)[0].split()) for n, line in enumerate(text, 1)]
    return [(n, tokens) for n, tokens in out if tokens]


def _applied_in_order(angles, axes: str) -> np.ndarray:
    """Rotation matrices (..., 3, 3) that apply the listed rotations first to last."""
    return euler_matrix(np.asarray(angles, np.float64)[..., ::-1], axes[::-1])


def _parse_bone(path, begin_line: int, block: list[tuple[int, list[str]]]) -> dict:
    """One `begin ... end` block of `:bonedata`."""
    bone = {"dof": (), "axis": np.zeros(3), "order": "XYZ", "line": begin_line}
    for n, tokens in block:
        key = tokens[0]
        if key == "name":
            bone["name"] = tokens[1] if len(tokens) == 2 else None
        elif key == "direction":
            bone["direction"] = parse_floats(path, n, tokens[1:], 3, "direction")
        elif key == "length":
            bone["length"] = parse_floats(path, n, tokens[1:], 1, "length")[0]
        elif key == "axis":
            bone["axis"] = parse_floats(path, n, tokens[1:4], 3, "axis")
            bone["order"] = tokens[4].upper() if len(tokens) == 5 else "XYZ"
            if sorted(bone["order"]) != ["X", "Y", "Z"]:
                raise parse_error(path, n, f"bad axis order {bone['order']!r}")
        elif key == "dof":
            bad = [d for d in tokens[1:] if d.lower() not in _ROTATION_DOFS]
            if bad:
                raise parse_error(path, n, f"unsupported dof {bad} (rotations rx ry rz only)")
            bone["dof"] = tuple(d.lower() for d in tokens[1:])
    for field in ("name", "direction", "length"):
        if bone.get(field) is None:
            raise parse_error(path, bone["line"], f"bone without a valid {field!r}")
    return bone


def parse_asf(path) -> dict:
    """The skeleton of an ASF file: units, root, bones (by name) and hierarchy (children)."""
    asf = {"length": 1.0, "angle": "deg", "bones": {}, "children": {}}
    root = {"order": ("TX", "TY", "TZ", "RX", "RY", "RZ"), "axis": "XYZ"}
    root.update(position=np.zeros(3), orientation=np.zeros(3))
    section, block, begin_line = None, None, 0
    for n, tokens in _lines(path):
        key = tokens[0]
        if key.startswith(":"):
            section = key
        elif section == ":units" and key in ("length", "angle"):
            if len(tokens) != 2:
                raise parse_error(path, n, f"bad :units line {' '.join(tokens)!r}")
            value = tokens[1].lower()
            asf[key] = parse_floats(path, n, [value], 1, "length")[0] if key == "length" else value
        elif section == ":root":
            if key in ("position", "orientation"):
                root[key] = parse_floats(path, n, tokens[1:], 3, key)
            elif key in ("order", "axis"):
                value = tuple(t.upper() for t in tokens[1:])
                if key == "axis" and (len(value) != 1 or sorted(value[0]) != ["X", "Y", "Z"]):
                    raise parse_error(path, n, f"bad root axis {' '.join(tokens[1:])!r}")
                root[key] = value if key == "order" else value[0]
        elif section == ":bonedata" and key == "begin":
            block, begin_line = [], n
        elif section == ":bonedata" and key == "end":
            if block is None:
                raise parse_error(path, n, "'end' without 'begin' in :bonedata")
            bone = _parse_bone(path, begin_line, block)
            asf["bones"][bone["name"]] = bone
            block = None
        elif section == ":bonedata" and block is not None:
            block.append((n, tokens))
        elif section == ":hierarchy" and key not in ("begin", "end"):
            asf["children"].setdefault(key, []).extend(tokens[1:])
            asf.setdefault("hierarchy_line", {})[key] = n
    if not asf["length"] > 0:
        raise parse_error(path, 1, f":units length must be positive, got {asf['length']}")
    if asf["angle"] not in ("deg", "rad"):
        raise parse_error(path, 1, f":units angle must be deg or rad, got {asf['angle']!r}")
    if not asf["bones"] or "root" not in asf["children"]:
        raise parse_error(path, 1, "no :bonedata bones or no 'root' in :hierarchy")
    asf["root"] = root
    return asf


def parse_amc(path, dofs: dict[str, int]) -> tuple[dict[str, np.ndarray], str | None]:
    """Per-bone (F, dof) values of an AMC file, and its angle unit ('deg', 'rad' or None).

    `dofs` maps each bone that has motion (and "root") to its number of values per frame.
    """
    frames, starts, angle = [], [], None
    for n, tokens in _lines(path):
        if tokens[0].startswith(":"):
            keyword = tokens[0].upper()
            angle = {":DEGREES": "deg", ":RADIANS": "rad"}.get(keyword, angle)
        elif len(tokens) == 1 and tokens[0].isdigit():
            frames.append({})
            starts.append(n)
        elif not frames:
            raise parse_error(path, n, "bone values before the first frame number")
        elif tokens[0] not in dofs:
            raise parse_error(path, n, f"bone {tokens[0]!r} is not in the ASF (or has no dof)")
        else:
            name = tokens[0]
            frames[-1][name] = parse_floats(path, n, tokens[1:], dofs[name], f"bone {name}")
    if not frames:
        raise parse_error(path, 1, "no frames")
    out = {}
    for name in dofs:
        missing = [k for k, frame in enumerate(frames) if name not in frame]
        if missing:
            k = missing[0]
            raise parse_error(path, starts[k], f"frame {k} has no values for bone {name!r}")
        out[name] = np.stack([frame[name] for frame in frames])
    return out, angle


def _bone_order(path, asf: dict) -> list[tuple[str, str]]:
    """(bone, parent) pairs, parents first, from the `:hierarchy` children lists."""
    order, queue, seen = [], ["root"], {"root"}
    while queue:
        parent = queue.pop(0)
        for child in asf["children"].get(parent, []):
            if child in seen:
                line = asf["hierarchy_line"][parent]
                raise parse_error(path, line, f"bone {child!r} appears twice in :hierarchy")
            if child not in asf["bones"]:
                line = asf["hierarchy_line"][parent]
                raise parse_error(path, line, f"bone {child!r} in :hierarchy has no :bonedata")
            seen.add(child)
            order.append((child, parent))
            queue.append(child)
    return order


def read_asf_amc(asf_path, amc_path) -> Motion:
    """Reads an AMC motion on its ASF skeleton into a `Motion` (see the module docstring).

    Points: "root" and each bone's end, named as the bone; `frame_time` is None (AMC has none).

    Raises:
      ValueError: one line naming the file and line (or field) for a malformed file.
    """
    asf = parse_asf(asf_path)
    bones, root = asf["bones"], asf["root"]
    order = _bone_order(asf_path, asf)
    dofs = {name: len(bone["dof"]) for name, bone in bones.items() if bone["dof"]}
    dofs["root"] = len(root["order"])
    values, amc_angle = parse_amc(amc_path, dofs)
    angle_scale = np.pi / 180 if (amc_angle or asf["angle"]) == "deg" else 1.0
    asf_scale = np.pi / 180 if asf["angle"] == "deg" else 1.0
    length = asf["length"]

    root_values = values["root"]
    translation = np.zeros((len(root_values), 3))
    rot_cols, rot_axes = [], ""
    for k, channel in enumerate(root["order"]):
        if channel[0] == "T" and channel[1:] in ("X", "Y", "Z"):
            translation[:, "XYZ".index(channel[1])] = root_values[:, k]
        elif channel[0] == "R" and channel[1:] in ("X", "Y", "Z"):
            rot_cols.append(k)
            rot_axes += channel[1]
        else:
            raise parse_error(asf_path, 1, f"unknown root order channel {channel!r}")
    c_root = _applied_in_order(root["orientation"] * asf_scale, root["axis"])
    m_root = _applied_in_order(root_values[:, rot_cols] * angle_scale, rot_axes)
    names = ["root"] + [name for name, _ in order]
    num_frames = len(root_values)
    rotations = np.zeros((num_frames, len(names), 3, 3))
    translations = np.zeros((num_frames, len(names), 3))
    end_offsets = np.zeros((len(names), 3))
    rotations[:, 0] = c_root @ m_root @ c_root.T
    translations[:, 0] = (root["position"] + translation) / length
    for p, (name, _) in enumerate(order, 1):
        bone = bones[name]
        c = _applied_in_order(bone["axis"] * asf_scale, bone["order"])
        dof_values = values.get(name, np.zeros((num_frames, 0)))
        m = _applied_in_order(dof_values * angle_scale, "".join(d[1] for d in bone["dof"]))
        rotations[:, p] = c @ m @ c.T
        norm = np.linalg.norm(bone["direction"])
        end_offsets[p] = bone["direction"] / max(norm, 1e-12) * bone["length"] / length
    parent_of = dict(order)
    return Motion(
        path=str(amc_path),
        names=tuple(names),
        parents=tuple(-1 if n == "root" else names.index(parent_of[n]) for n in names),
        local_rotations=rotations,
        local_translations=translations,
        end_offsets=end_offsets,
        frame_time=None,
    )
