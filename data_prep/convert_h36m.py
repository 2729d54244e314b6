"""Converts the VideoPose3D Human3.6M npz files into the TFDS dataset `h36m_lifting/<source>`.

  python -m data_prep.convert_h36m --data_3d data_3d_h36m.npz \
      --data_2d data_2d_h36m_gt.npz data_2d_h36m_cpn_ft_h36m_dbb.npz \
      --data_dir ~/tensorflow_datasets

One dataset config per 2D file, named by the file (`data_2d_h36m_<source>.npz` -> `<source>`);
read it as `h36m_lifting/<source>`. Every file is checked before anything is written; each config is
built in a hidden staging directory inside --data_dir and renamed into place when complete, so a
failed or interrupted run leaves no dataset behind and can simply be run again. A config that
already exists is kept (and reported) unless --overwrite is given. Bad input (scores outside
[0, 1], coordinates that are not pixels or metres, 2D much longer than its 3D, a subject named in
a split flag but absent from the 3D file, ...) stops it with one line naming the file, subject,
action and camera, and exit status 1.
"""

from absl import app, flags

from experiments._errors import user_errors
from gentg_jax import logs
from gentg_jax.data import h36m, tfds_builders

_DATA_3D = flags.DEFINE_string("data_3d", None, "data_3d_h36m.npz (positions_3d).", required=True)
_DATA_2D = flags.DEFINE_multi_string(
    "data_2d",
    [],
    "data_2d_h36m_<source>.npz files (positions_2d); repeat the flag or list several after it.",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "TFDS data_dir (empty: $TFDS_DATA_DIR or ~/tensorflow_datasets)."
)
_TRAIN = flags.DEFINE_list("train_subjects", list(h36m.TRAIN_SUBJECTS), "Train split subjects.")
_TEST = flags.DEFINE_list("test_subjects", list(h36m.TEST_SUBJECTS), "Test split subjects.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild configs that already exist.")
_ALLOW_TRIM = flags.DEFINE_bool(
    "allow_trim",
    False,
    "Cut 2D of any length to its 3D (by default at most max(5 frames, 1 %) longer is cut).",
)


@user_errors
def main(argv: list[str]) -> None:
    logs.setup_logging()
    # `--data_2d a.npz b.npz` leaves b.npz as a positional argument: it is a 2D file too.
    data_2d = [*_DATA_2D.value, *argv[1:]]
    paths = tfds_builders.build_h36m_lifting(
        _DATA_3D.value,
        data_2d,
        _DATA_DIR.value,
        # Not given: Human3.6M's split, without the subjects the file lacks.
        train_subjects=_TRAIN.value if _TRAIN.present else None,
        test_subjects=_TEST.value if _TEST.present else None,
        overwrite=_OVERWRITE.value,
        allow_trim=_ALLOW_TRIM.value,
    )
    for path in paths:
        print(f"h36m_lifting/{path.parent.name}: {path}")


if __name__ == "__main__":
    app.run(main)
