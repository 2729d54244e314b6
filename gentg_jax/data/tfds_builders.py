"""TFDS datasets in array_record files (no TensorFlow): `h36m_lifting/<source>`, `synthetic_h36m`,
`mocap_h36m/<name>_<gt|detector>`.

One example per (subject, action, camera), in (subject, action, camera) order:
`subject`, `action`, `camera` (text), `keypoints_2d` (T, 17, 2) pixels, `scores` (T, 17),
`pose_3d` (T, 17, 3) camera-frame metres (absolute), `intrinsics` (9,) normalised, `image_size`
(2,) = (w, h). Splits `train` and `test` by subject.

Build (each writes into a hidden staging directory inside data_dir and renames into place):
  python -m data_prep.convert_h36m --data_3d data_3d_h36m.npz --data_2d data_2d_h36m_gt.npz \
      --data_dir DIR
  python -m data_prep.make_synthetic --data_dir DIR
  python -m data_prep.convert_mocap --mocap DIR --rig bandai --name NAME --data_dir DIR
Read (random access, e.g. as a grain data source):
  source = open_split("h36m_lifting/gt", DIR, "train"); len(source); source[0]["pose_3d"]
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from gentg_jax import skeleton
from gentg_jax.data import h36m, synthetic, tfds_writer, videopose3d

VERSION = "1.0.0"
SPLITS = ("train", "test")
H36M_LIFTING = "h36m_lifting"
SYNTHETIC_H36M = "synthetic_h36m"
SYNTHETIC_CONFIGS = ("detector", "gt")
MOCAP_H36M = "mocap_h36m"
MOCAP_SOURCES = ("gt", "detector")  # mocap_h36m/<name>_<source>
_TEXT_FEATURES = ("subject", "action", "camera")
_CITATION = "Pavllo et al., 3D human pose estimation in video with temporal convolutions, 2019"

Example = dict[str, Any]


def features() -> tfds.features.FeaturesDict:
    """The feature spec shared by every dataset here."""
    joints = skeleton.NUM_JOINTS

    def tensor(shape, dtype=np.float32):
        # Raw bytes: no per-value protobuf encoding, so large sequences serialise at memcpy speed.
        return tfds.features.Tensor(shape=shape, dtype=dtype, encoding=tfds.features.Encoding.BYTES)

    return tfds.features.FeaturesDict(
        {
            "subject": tfds.features.Text(),
            "action": tfds.features.Text(),
            "camera": tfds.features.Text(),
            "keypoints_2d": tensor((None, joints, 2)),
            "scores": tensor((None, joints)),
            "pose_3d": tensor((None, joints, 3)),
            "intrinsics": tensor((9,)),
            "image_size": tensor((2,), np.int32),
        }
    )


def _check_splits(train_subjects: Iterable[str], test_subjects: Iterable[str]):
    if isinstance(train_subjects, str) or isinstance(test_subjects, str):
        raise ValueError("split subjects are sequences of names such as ['S1', 'S5'], not strings")
    train, test = tuple(train_subjects), tuple(test_subjects)
    if not train or not test:
        raise ValueError(f"train and test subjects must be non-empty, got {train} and {test}")
    if overlap := sorted(set(train) & set(test)):
        raise ValueError(f"subjects {overlap} are in both the train and the test split")
    return {"train": train, "test": test}


def _require_subjects(split_subjects: dict[str, tuple[str, ...]], available, where: str) -> None:
    for split, subjects in split_subjects.items():
        if not set(subjects) & set(available):
            raise ValueError(
                f"{where}: no data for any {split} subject {list(subjects)} "
                f"(available: {sorted(available)}); choose the split subjects accordingly"
            )


def _info(builder, description: str, metadata: dict) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=features(),
        homepage="https://github.com/facebookresearch/VideoPose3D",
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(metadata),
        # Examples are stored in generation order: by subject, action and camera.
        disable_shuffling=True,
    )


@dataclasses.dataclass(eq=False)
class H36MLiftingConfig(tfds.core.BuilderConfig):
    """One 2D source: the config name is the source, the files are where the data comes from."""

    data_3d: str = ""
    data_2d: str = ""
    allow_trim: bool = False  # cut 2D of any length to the 3D (see videopose3d.trim_tolerance)


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """What both builders share: the version, the split subjects and the code path."""

    VERSION = tfds.core.Version(VERSION)

    def __init__(
        self,
        *,
        train_subjects: Sequence[str] = h36m.TRAIN_SUBJECTS,
        test_subjects: Sequence[str] = h36m.TEST_SUBJECTS,
        **kwargs,
    ):
        self._split_subjects = _check_splits(train_subjects, test_subjects)
        super().__init__(**kwargs)

    # TFDS 4.9.10 looks the code path up through `importlib_resources`, which it only installs on
    # Python < 3.9; the answer it would find is this file.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)

    def _generate_splits(self, dl_manager, download_config) -> list[tfds.core.SplitInfo]:
        # TFDS's own writer holds a whole split in memory and spills past 1 GB through
        # tf.io.gfile, which needs TensorFlow. These examples come in their final order, so they
        # are streamed straight into array_record shards instead.
        del download_config
        return [
            tfds_writer.write_split(split, examples, self.info.features, self.data_path, self.name)
            for split, examples in self._split_generators(dl_manager).items()
        ]


class H36MLifting(_Builder):
    """Human3.6M (VideoPose3D npz files) for 2D->3D lifting, one builder config per 2D source.

    Configs are created from the files (`H36MLiftingConfig(name=source, data_3d=..., data_2d=...)`)
    since any source name is allowed; reading needs no config (see `open_split`).
    """

    name = H36M_LIFTING

    def __init__(self, *, config: H36MLiftingConfig | None = None, **kwargs):
        if not isinstance(config, H36MLiftingConfig):
            raise ValueError(
                "h36m_lifting is built with one H36MLiftingConfig(name=source, data_3d=..., "
                f"data_2d=...) per 2D source, got config={config!r}; to read a built dataset use "
                "open_split('h36m_lifting/<source>', data_dir, split)"
            )
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return _info(
            self,
            "Human3.6M 2D keypoints, confidences and camera-frame 3D poses, per camera.",
            {
                "data_3d": pathlib.Path(config.data_3d).name,
                "data_2d": pathlib.Path(config.data_2d).name,
                **self._split_subjects,
            },
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the files are local
        config = self.builder_config
        subjects = [s for split in SPLITS for s in self._split_subjects[split]]
        sequences = videopose3d.load_sequences(
            config.data_3d, config.data_2d, subjects, allow_trim=config.allow_trim
        )
        return {
            split: self._generate_examples(
                [seq for seq in sequences if seq.subject in self._split_subjects[split]]
            )
            for split in SPLITS
        }

    def _generate_examples(self, sequences: list[videopose3d.MocapSequence]):
        for sequence in sequences:
            yield from videopose3d.camera_examples(sequence)


@dataclasses.dataclass(eq=False)
class MocapH36MConfig(H36MLiftingConfig):
    """`<name>_<source>`: VideoPose3D files written by `convert_mocap`, and its summary."""

    summary: dict = dataclasses.field(default_factory=dict, repr=False)


class MocapH36M(H36MLifting):
    """Motion capture (BVH, ASF/AMC) placed in the H36M volume and seen by its four cameras.

    The same code path as `h36m_lifting` on the VideoPose3D files that `data_prep.convert_mocap`
    writes; the conversion summary is in the description and the metadata (`conversion`).
    """

    name = MOCAP_H36M

    def __init__(self, *, config: MocapH36MConfig | None = None, **kwargs):
        if not isinstance(config, MocapH36MConfig):
            raise ValueError(
                "mocap_h36m is built by data_prep.convert_mocap (build_mocap_h36m), got "
                f"config={config!r}; to read a built dataset use "
                "open_split('mocap_h36m/<name>_<gt|detector>', data_dir, split)"
            )
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return _info(
            self,
            "Motion capture placed in the Human3.6M capture volume, 2D keypoints seen by its "
            f"four calibrated cameras ({config.description})",
            {
                "data_3d": pathlib.Path(config.data_3d).name,
                "data_2d": pathlib.Path(config.data_2d).name,
                **self._split_subjects,
                "conversion": config.summary,
            },
        )


@dataclasses.dataclass(eq=False)
class SyntheticH36MConfig(tfds.core.BuilderConfig):
    source: str = "detector"


class SyntheticH36M(_Builder):
    """Synthetic motion seen by the real H36M cameras; `detector` (noisy 2D) or `gt` 2D."""

    name = SYNTHETIC_H36M
    BUILDER_CONFIGS = [
        SyntheticH36MConfig(
            name="detector",
            source="detector",
            description="Detector-like 2D: noise, jitter, occluded joints with low scores.",
        ),
        SyntheticH36MConfig(name="gt", source="gt", description="Exact 2D projections, scores 1."),
    ]

    def __init__(
        self,
        *,
        generator: synthetic.SyntheticConfig | None = None,
        **kwargs,
    ):
        self._generator = generator or synthetic.SyntheticConfig()
        super().__init__(**kwargs)
        _require_subjects(self._split_subjects, self._generator.subjects, "synthetic config")

    def _info(self) -> tfds.core.DatasetInfo:
        return _info(
            self,
            "Synthetic motion with H36M bone lengths, projected by the real H36M cameras.",
            {"generator": dataclasses.asdict(self._generator), **self._split_subjects},
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated locally
        return {split: self._generate_examples(self._split_subjects[split]) for split in SPLITS}

    def _generate_examples(self, subjects: Sequence[str]):
        # The generator draws per (subject, action, camera), so a subset generates identically.
        chosen = tuple(s for s in self._generator.subjects if s in subjects)
        config = dataclasses.replace(self._generator, subjects=chosen)
        yield from synthetic.generate_examples(config, source=self.builder_config.source)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path:
    """`data_dir`, or $TFDS_DATA_DIR, or ~/tensorflow_datasets (as TFDS itself chooses).

    Raises:
      NotADirectoryError: the chosen path (or one above it) is a file.
    """
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    path = pathlib.Path(chosen).expanduser()
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"data_dir {path}: {parent} is a file, not a directory")
            break
    return path


def _named_subjects(
    split_subjects: dict[str, tuple[str, ...]], explicit: dict[str, bool], available, where: str
) -> None:
    """Subjects named explicitly must exist (a typo is an error); absent default ones are
    left out of their split with a warning."""
    for split, subjects in split_subjects.items():
        if missing := [s for s in subjects if s not in available]:
            if explicit[split]:
                raise ValueError(
                    f"{where}: {split} subjects {missing} are not there (subjects there: "
                    f"{sorted(available)}); fix --{split}_subjects"
                )
            logging.warning(
                "%s: no %s subjects %s; the split goes without them", where, split, missing
            )


def _default_splits(train_subjects, test_subjects):
    """(train, test, {split: named explicitly}); None means Human3.6M's split."""
    explicit = {"train": train_subjects is not None, "test": test_subjects is not None}
    train = h36m.TRAIN_SUBJECTS if train_subjects is None else train_subjects
    test = h36m.TEST_SUBJECTS if test_subjects is None else test_subjects
    return train, test, explicit


def build_h36m_lifting(
    data_3d: str | os.PathLike,
    data_2d: Sequence[str | os.PathLike],
    data_dir: str | os.PathLike | None,
    *,
    train_subjects: Sequence[str] | None = None,
    test_subjects: Sequence[str] | None = None,
    overwrite: bool = False,
    allow_trim: bool = False,
) -> list[pathlib.Path]:
    """Converts VideoPose3D files into `h36m_lifting/<source>`, one config per 2D file.

    Every file is validated before anything is written. Split subjects default to Human3.6M's
    (None; those absent from the 3D file are left out with a warning); subjects named
    explicitly must be in the 3D file. `allow_trim` cuts 2D of any length to the 3D length
    (by default at most `videopose3d.trim_tolerance` extra frames). Returns the dataset
    directories.
    """
    if not data_2d:
        raise ValueError("no 2D file given (data_2d_h36m_<source>.npz)")
    train_subjects, test_subjects, explicit = _default_splits(train_subjects, test_subjects)
    split_subjects = _check_splits(train_subjects, test_subjects)
    root = resolve_data_dir(data_dir)
    sources = [videopose3d.source_name(path) for path in data_2d]
    if len(set(sources)) != len(sources):
        raise ValueError(f"two 2D files name the same source: {[os.fspath(p) for p in data_2d]}")
    positions_3d = videopose3d.load_positions_3d(data_3d)
    _require_subjects(split_subjects, positions_3d, os.fspath(data_3d))
    _named_subjects(split_subjects, explicit, positions_3d, os.fspath(data_3d))
    for path in data_2d:
        videopose3d.load_sequences(
            data_3d, path, list(positions_3d), positions_3d, allow_trim=allow_trim
        )
    del positions_3d  # each build reads the files again, one source at a time
    return [
        tfds_writer.build_atomically(
            lambda staging, source=source, path=path: H36MLifting(
                data_dir=staging,
                config=H36MLiftingConfig(
                    name=source,
                    data_3d=os.fspath(data_3d),
                    data_2d=os.fspath(path),
                    allow_trim=allow_trim,
                ),
                train_subjects=train_subjects,
                test_subjects=test_subjects,
            ),
            root / H36M_LIFTING / source / VERSION,
            overwrite,
        )
        for source, path in zip(sources, data_2d, strict=True)
    ]


def build_synthetic_h36m(
    data_dir: str | os.PathLike | None,
    *,
    generator: synthetic.SyntheticConfig | None = None,
    configs: Sequence[str] = SYNTHETIC_CONFIGS,
    train_subjects: Sequence[str] | None = None,
    test_subjects: Sequence[str] | None = None,
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Generates `synthetic_h36m/<config>` for each of `configs`; returns the dataset dirs.

    Split subjects default to Human3.6M's (None); subjects named explicitly must be among the
    generator's subjects.
    """
    if unknown := sorted(set(configs) - set(SYNTHETIC_CONFIGS)):
        raise ValueError(f"unknown synthetic_h36m configs {unknown}; known: {SYNTHETIC_CONFIGS}")
    train_subjects, test_subjects, explicit = _default_splits(train_subjects, test_subjects)
    generated = (generator or synthetic.SyntheticConfig()).subjects
    _named_subjects(
        _check_splits(train_subjects, test_subjects), explicit, generated, "synthetic config"
    )
    return [
        tfds_writer.build_atomically(
            lambda staging, config=config: SyntheticH36M(
                data_dir=staging,
                config=config,
                generator=generator,
                train_subjects=train_subjects,
                test_subjects=test_subjects,
            ),
            resolve_data_dir(data_dir) / SYNTHETIC_H36M / config / VERSION,
            overwrite,
        )
        for config in configs
    ]


def build_mocap_h36m(
    data_3d: str | os.PathLike,
    data_2d: dict[str, str | os.PathLike],
    data_dir: str | os.PathLike | None,
    name: str,
    *,
    summary: dict | None = None,
    description: str = "",
    overwrite: bool = False,
) -> list[pathlib.Path]:
    """Builds `mocap_h36m/<name>_<source>` for each `{source: data_2d file}` (gt, detector).

    The files are what `data_prep.convert_mocap` writes (VideoPose3D format); `summary` (its
    conversion summary, JSON-serialisable) goes into the dataset's metadata as `conversion` and
    `description` into its description. Returns the dataset directories.
    """
    if unknown := sorted(set(data_2d) - set(MOCAP_SOURCES)):
        raise ValueError(f"unknown mocap_h36m sources {unknown}; known: {MOCAP_SOURCES}")
    return [
        tfds_writer.build_atomically(
            lambda staging, source=source, path=path: MocapH36M(
                data_dir=staging,
                config=MocapH36MConfig(
                    name=f"{name}_{source}",
                    description=f"{name}, {source} 2D; {description}",
                    data_3d=os.fspath(data_3d),
                    data_2d=os.fspath(path),
                    summary=summary or {},
                ),
            ),
            resolve_data_dir(data_dir) / MOCAP_H36M / f"{name}_{source}" / VERSION,
            overwrite,
        )
        for source, path in data_2d.items()
    ]


def parse_name(name: str) -> tuple[str, str]:
    """(dataset, config) of a name; "synthetic_h36m" alone means its "detector" config."""
    dataset, _, config = name.partition("/")
    if dataset == SYNTHETIC_H36M and config in ("", *SYNTHETIC_CONFIGS):
        return dataset, config or SYNTHETIC_CONFIGS[0]
    if dataset == H36M_LIFTING and config and "/" not in config:
        return dataset, config
    mocap_name, _, source = config.rpartition("_")
    if dataset == MOCAP_H36M and mocap_name and source in MOCAP_SOURCES and "/" not in config:
        return dataset, config
    raise ValueError(
        f"unknown dataset name {name!r}: expected 'synthetic_h36m', 'synthetic_h36m/gt', "
        "'h36m_lifting/<source>' (source = <source> of data_2d_h36m_<source>.npz) or "
        "'mocap_h36m/<name>_gt' / 'mocap_h36m/<name>_detector' (data_prep.convert_mocap --name)"
    )


def _build_command(dataset: str, config: str, root: pathlib.Path) -> str:
    if dataset == SYNTHETIC_H36M:
        return f"python -m data_prep.make_synthetic --data_dir {root} --configs {config}"
    if dataset == MOCAP_H36M:
        return (
            "python -m data_prep.convert_mocap --mocap MOCAP_DIR --rig RIG "
            f"--name {config.rpartition('_')[0]} --data_dir {root}"
        )
    return (
        f"python -m data_prep.convert_h36m --data_3d data_3d_h36m.npz "
        f"--data_2d data_2d_h36m_{config}.npz --data_dir {root}"
    )


def dataset_dir(name: str, data_dir: str | os.PathLike | None) -> pathlib.Path:
    """The directory of a built dataset; FileNotFoundError (saying how to build it) if missing."""
    dataset, config = parse_name(name)
    root = resolve_data_dir(data_dir)
    path = root / dataset / config / VERSION
    if not (path / tfds.core.constants.DATASET_INFO_FILENAME).is_file():
        built = sorted(p.parent.name for p in root.glob(f"{dataset}/*/{VERSION}/dataset_info.json"))
        raise FileNotFoundError(
            f"dataset {dataset}/{config} not found in {root} (built configs there: {built}); "
            f"build it with: {_build_command(dataset, config, root)}"
        )
    return path


class SplitSource:
    """Random access to one split: `len(source)`, `source[i]` -> example dict.

    Arrays are numpy (read-only views of the record); text fields are `str`. Picklable, so it
    can serve as a grain data source in worker processes.
    """

    def __init__(self, data_source, description: str):
        self._source = data_source
        self._description = description

    def __len__(self) -> int:
        return len(self._source)

    @staticmethod
    def _decode(example: Example) -> Example:
        for key in _TEXT_FEATURES:
            example[key] = example[key].decode("utf-8")
        return example

    def __getitem__(self, index: int) -> Example:
        return self._decode(self._source[index])

    def __getitems__(self, indices: Sequence[int]) -> list[Example]:
        return [self._decode(example) for example in self._source.__getitems__(indices)]

    def __repr__(self) -> str:
        return f"SplitSource({self._description}, {len(self)} examples)"


def open_split(name: str, data_dir: str | os.PathLike | None, split: str) -> SplitSource:
    """Opens a split of a built dataset for random access.

    Args:
      name: "synthetic_h36m" (= "synthetic_h36m/detector"), "synthetic_h36m/gt",
        "h36m_lifting/<source>" or "mocap_h36m/<name>_<gt|detector>".
      data_dir: the TFDS data directory; None or "" means $TFDS_DATA_DIR or ~/tensorflow_datasets.
      split: "train" or "test".

    Returns:
      A `SplitSource` over the split's examples.
    """
    path = dataset_dir(name, data_dir)
    # Read from the files alone: h36m_lifting configs are not known to the code in advance.
    builder = tfds.builder_from_directory(path)
    if split not in builder.info.splits:
        raise ValueError(f"{name} has no split {split!r}; splits: {list(builder.info.splits)}")
    return SplitSource(builder.as_data_source(split=split), f"{name}[{split}] at {path}")
