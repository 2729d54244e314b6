"""Converts the VideoPose3D Human3.6M npz files into the TFDS dataset `h36m_lifting/<source>`.

  python -m data_prep.convert_h36m --data_3d data_3d_h36m.npz \
      --data_2d data_2d_h36m_gt.npz data_2d_h36m_cpn_ft_h36m_dbb.npz \
      --data_dir ~/tensorflow_datasets

One dataset config per 2D file, named by the file (`data_2d_h36m_<source>.npz` -> `<source>`);
read it as `h36m_lifting/<source>`. Every file is checked before anything is written; each config is
built in a hidden staging directory inside --data_dir and renamed into place when complete, so a
failed or interrupted run leaves no dataset behind and can simply be run again. A config that
already exists is kept (and reported) unless --overwrite is given.
"""

import sys

from absl import app, flags

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


def main(argv: list[str]) -> None:
    # `--data_2d a.npz b.npz` leaves b.npz as a positional argument: it is a 2D file too.
    data_2d = [*_DATA_2D.value, *argv[1:]]
    try:
        paths = tfds_builders.build_h36m_lifting(
            _DATA_3D.value,
            data_2d,
            _DATA_DIR.value,
            train_subjects=_TRAIN.value,
            test_subjects=_TEST.value,
            overwrite=_OVERWRITE.value,
        )
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"convert_h36m: {error}")
    for path in paths:
        print(f"h36m_lifting/{path.parent.name}: {path}")


if __name__ == "__main__":
    app.run(main)
