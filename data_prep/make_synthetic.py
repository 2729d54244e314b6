"""Generates the TFDS dataset `synthetic_h36m` (configs `detector` and `gt`).

  python -m data_prep.make_synthetic --data_dir ~/tensorflow_datasets
  python -m data_prep.make_synthetic --data_dir /tmp/tfds --frames_per_sequence 120 \
      --subjects S1,S9 --configs gt

Deterministic given the flags. Each config is built in a hidden staging directory inside
--data_dir and renamed into place when complete; a config that already exists is kept (and
reported) unless --overwrite is given.
"""

from absl import app, flags

from experiments._errors import user_errors
from gentg_jax import logs
from gentg_jax.data import h36m, synthetic, tfds_builders

_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "TFDS data_dir (empty: $TFDS_DATA_DIR or ~/tensorflow_datasets)."
)
_FRAMES = flags.DEFINE_integer(
    "frames_per_sequence", synthetic.SyntheticConfig.frames_per_sequence, "Frames per sequence."
)
_SEED = flags.DEFINE_integer("seed", 0, "Generator seed.")
_SUBJECTS = flags.DEFINE_list("subjects", list(h36m.SUBJECTS), "Subjects to generate.")
_ACTIONS = flags.DEFINE_list("actions", list(h36m.ACTIONS), "Actions to generate.")
_CONFIGS = flags.DEFINE_list(
    "configs", list(tfds_builders.SYNTHETIC_CONFIGS), "Configs to build (detector, gt)."
)
_TRAIN = flags.DEFINE_list("train_subjects", list(h36m.TRAIN_SUBJECTS), "Train split subjects.")
_TEST = flags.DEFINE_list("test_subjects", list(h36m.TEST_SUBJECTS), "Test split subjects.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild configs that already exist.")


@user_errors
def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logs.setup_logging()
    generator = synthetic.SyntheticConfig(
        seed=_SEED.value,
        subjects=tuple(_SUBJECTS.value),
        actions=tuple(_ACTIONS.value),
        frames_per_sequence=_FRAMES.value,
    )
    paths = tfds_builders.build_synthetic_h36m(
        _DATA_DIR.value,
        generator=generator,
        configs=_CONFIGS.value,
        # Not given: Human3.6M's split, without the subjects not generated.
        train_subjects=_TRAIN.value if _TRAIN.present else None,
        test_subjects=_TEST.value if _TEST.present else None,
        overwrite=_OVERWRITE.value,
    )
    for path in paths:
        print(f"synthetic_h36m/{path.parent.name}: {path}")


if __name__ == "__main__":
    app.run(main)
