"""Converts motion capture (BVH, ASF/AMC) into the TFDS datasets `mocap_h36m/<name>_gt` and
`mocap_h36m/<name>_detector`: each clip placed in the Human3.6M capture volume and seen by the
four H36M cameras of the subject it is assigned to.

  python -m data_prep.convert_mocap --mocap cmu_bvh/ --rig cc_base --name cmu \
      --data_dir ~/tensorflow_datasets
  python -m data_prep.convert_mocap --mocap bandai/ --rig bandai --mocap cmu_bvh/ --rig cc_base \
      --name both --data_dir ~/tensorflow_datasets      # one dataset from several folders
  python -m experiments.train_tgt --config configs/tgt_base.py:tiny --workdir runs/mocap \
      --config.data.name=mocap_h36m/cmu_detector --config.data.data_dir=~/tensorflow_datasets

--rig: cmu (ASF/AMC), cc_base, bandai or a JSON rig map (gentg_jax/data/mocap/__init__.py), one
per --mocap or one for all (none: detected from the first file). --subjects auto splits by
performer (gentg_jax/data/mocap/assign.py); a CSV `clip,subject,action` assigns clips by hand.
The policy (rejections, glitch cuts, pieces) is in gentg_jax/data/mocap/convert.py. Writes
<data_dir>/mocap_h36m_sources/<name>/ (the VideoPose3D npz files, conversion_summary.json) and
the two datasets; existing datasets are kept unless --overwrite.
"""

import sys

from absl import app, flags

from gentg_jax.data import mocap

_MOCAP = flags.DEFINE_multi_string("mocap", [], "Folder of .bvh / .amc files (repeatable).")
_RIG = flags.DEFINE_multi_string(
    "rig", [], "cmu | cc_base | bandai | map.json: one per --mocap, or one for all."
)
_SUBJECTS = flags.DEFINE_string("subjects", "auto", "auto, or a CSV clip,subject,action.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "TFDS data_dir (empty: $TFDS_DATA_DIR or ~/tensorflow_datasets)."
)
_NAME = flags.DEFINE_string("name", None, "Dataset name: mocap_h36m/<name>_<gt|detector>.")
_ACTION_REGEX = flags.DEFINE_string(
    "action_regex", None, "Regex on file names: group 'action' (and optional 'performer')."
)
_SEED = flags.DEFINE_integer("seed", 0, "Auto split order and detector noise.")
_MIN_FRAMES = flags.DEFINE_integer(
    "min_frames", mocap.convert.MIN_FRAMES, "Shortest sequence kept (frames at 50 fps)."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild datasets that already exist.")
flags.mark_flag_as_required("name")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit(f"convert_mocap: unexpected arguments {argv[1:]}")
    folders, rig_flags = _MOCAP.value, _RIG.value
    if not folders:
        sys.exit("convert_mocap: give at least one --mocap folder")
    if len(rig_flags) > 1 and len(rig_flags) != len(folders):
        sys.exit(f"convert_mocap: {len(rig_flags)} --rig for {len(folders)} --mocap folders")
    rigs = rig_flags * len(folders) if len(rig_flags) == 1 else rig_flags or [None] * len(folders)
    sources = [mocap.MocapSource(f, r) for f, r in zip(folders, rigs, strict=True)]
    try:
        summary = mocap.convert_mocap(
            sources,
            _DATA_DIR.value,
            _NAME.value,
            subjects=_SUBJECTS.value,
            action_regex=_ACTION_REGEX.value,
            seed=_SEED.value,
            overwrite=_OVERWRITE.value,
            min_frames=_MIN_FRAMES.value,
        )
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"convert_mocap: {error}")
    if summary:
        print(mocap.summary.format_summary(summary))


if __name__ == "__main__":
    app.run(main)
