"""Motion capture in (BVH, ASF/AMC) -> Human3.6M-17 world poses, placed in the H36M volume.

    clip = mocap.load_clip("walk.bvh", "bandai")      # (F, 17, 3) metres, z up, 50 fps
    mocap.check_clip(clip)                            # raises a ValueError naming the file
    placed, info = mocap.place_clip(clip, "S1")       # floor at z = 0, inside all 4 cameras
    for piece, placed, info in mocap.place_segments(clip, "S1"): ...  # long walks, cut to fit
    mocap.convert_mocap([mocap.MocapSource("cmu/", "cc_base")], data_dir, "cmu")  # -> TFDS

Modules: `kinematics` (Motion, forward kinematics, resampling, rotations), `bvh` and `asf`
(readers), `rigs` (rig maps, `load_clip`), `placement` (floor, capture volume, yaw, in-image
share, cutting long clips), `checks` (finite values, length, rigid limbs, left/right and
facing, glitch speeds), `assign` (performers, actions, H36M subjects and splits), `convert`
(folders -> VideoPose3D files -> TFDS `mocap_h36m/<name>_<gt|detector>`), `writer` (the npz
files and their checks) and `summary`.

Named points. Forward kinematics gives world positions of named points: for BVH, every joint's
origin under its own name and every End Site as "<parent joint>_end"; for ASF/AMC, "root" and
every bone's *end* under the bone's name (an ASF bone starts where its parent ends).

Rig map JSON (a user map for any other rig; the built-in maps `rigs.RIG_MAPS` have this shape)::

    {
      "name": "my_rig",
      "joints": {"hip": "Hips", "rhip": "RightUpLeg", ..., "spine": ["Spine", "Spine1"],
                 "head": {"point": "Head", "offset": [0, 15, 3]}, ...},
      "toes": {"left": "LeftToeBase", "right": "RightToeBase"},
      "length_unit_m": 0.01,
      "up_axis": "y",
      "contact_height_m": 0.04,
      "drop_first_frames": 0,
      "fps": null
    }

- "joints" (required): every one of the 17 H36M names in `skeleton.JOINT_NAMES` (hip, rhip,
  rknee, rankle, lhip, lknee, lankle, spine, thorax, neck_nose, head, lshoulder, lelbow, lwrist,
  rshoulder, relbow, rwrist) -> a named point; or a list of two named points (their mean); or
  {"point": name, "offset": [x, y, z]}: the point plus an offset in that point's own frame, in
  file units, as if it had one more End Site (BVH) or child bone (ASF, rest-pose axes) there.
- "toes" (optional): a point on each foot's toes, for the floor and the facing checks.
- "length_unit_m" (required): metres per file length unit (ASF: per unit after the file's own
  `:units length` scale is divided out: inches, 0.0254, for CMU).
- "up_axis" (required): the file's up axis: x, y, z, -x, -y or -z (files are right-handed).
- "contact_height_m" (optional, default 0): height above the floor of the toe points (or of
  the ankles, without "toes") when the foot is flat on the floor.
- "drop_first_frames" (optional, default 0): frames to drop at the start (e.g. a T-pose).
- "fps" (optional): the frame rate for formats without one (AMC); a BVH's Frame Time wins.
"""

from gentg_jax.data.mocap.asf import read_asf_amc
from gentg_jax.data.mocap.assign import auto_subjects, read_subjects_csv
from gentg_jax.data.mocap.bvh import read_bvh
from gentg_jax.data.mocap.checks import check_clip, clip_problems, limb_length_variation
from gentg_jax.data.mocap.convert import MocapSource, convert_mocap, detect_rig
from gentg_jax.data.mocap.kinematics import (
    Motion,
    euler_matrix,
    forward_kinematics,
    resample_motion,
)
from gentg_jax.data.mocap.placement import (
    apply_placement,
    capture_centre,
    floor_height,
    image_margins,
    in_image_share,
    place_clip,
    place_segments,
)
from gentg_jax.data.mocap.rigs import (
    RIG_MAPS,
    TARGET_FPS,
    Clip,
    RigMap,
    RigMapError,
    load_clip,
    rig_map,
    to_z_up,
)
from gentg_jax.data.mocap.writer import project_world, verify_files, write_npz

__all__ = [
    "Clip",
    "MocapSource",
    "Motion",
    "RIG_MAPS",
    "RigMap",
    "RigMapError",
    "TARGET_FPS",
    "apply_placement",
    "auto_subjects",
    "capture_centre",
    "check_clip",
    "clip_problems",
    "convert_mocap",
    "detect_rig",
    "euler_matrix",
    "floor_height",
    "forward_kinematics",
    "image_margins",
    "in_image_share",
    "limb_length_variation",
    "load_clip",
    "place_clip",
    "place_segments",
    "project_world",
    "read_asf_amc",
    "read_bvh",
    "read_subjects_csv",
    "resample_motion",
    "rig_map",
    "to_z_up",
    "verify_files",
    "write_npz",
]
