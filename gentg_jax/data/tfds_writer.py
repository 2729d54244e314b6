"""Writing TFDS datasets without TensorFlow: streamed array_record splits, atomic builds."""

from __future__ import annotations

import os
import pathlib
import shutil
from collections.abc import Callable, Iterable
from typing import Any

import tensorflow_datasets as tfds
from absl import logging
from array_record.python import array_record_module
from etils import epath

from gentg_jax import logs

STAGING_PREFIX = ".incomplete-"
SHARD_BYTES = 256 * 2**20  # a split's next shard starts once this many bytes are written


def write_split(
    split: str,
    examples: Iterable[tuple[Any, dict[str, Any]]],
    features: tfds.features.FeaturesDict,
    data_dir: epath.Path,
    dataset_name: str,
) -> tfds.core.SplitInfo:
    """Writes examples in order into shards of about SHARD_BYTES; returns the split's info."""
    template = tfds.core.ShardedFileTemplate(
        data_dir=data_dir,
        dataset_name=dataset_name,
        split=split,
        filetype_suffix="array_record",
        template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}",
    )
    serializer = tfds.core.example_serializer.ExampleSerializer(features.get_serialized_info())
    shard_lengths, shard_bytes, total_bytes, writer = [], 0, 0, None
    examples = logs.progress(examples, desc=f"{dataset_name} {split}", unit=" examples")
    for _, example in examples:
        if writer is None:
            path = template.sharded_filepath(shard_index=len(shard_lengths), num_shards=None)
            # group_size 1: every record is read on its own, as random access wants.
            writer = array_record_module.ArrayRecordWriter(os.fspath(path), "group_size:1")
            shard_lengths.append(0)
            shard_bytes = 0
        record = serializer.serialize_example(features.encode_example(example))
        writer.write(record)
        shard_lengths[-1] += 1
        shard_bytes += len(record)
        total_bytes += len(record)
        if shard_bytes >= SHARD_BYTES:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()
    if not shard_lengths:
        raise ValueError(f"{dataset_name}: split {split!r} has no examples")
    return tfds.core.SplitInfo(
        name=split, shard_lengths=shard_lengths, num_bytes=total_bytes, filename_template=template
    )


def build_atomically(
    make_builder: Callable[[str], tfds.core.DatasetBuilder],
    final: pathlib.Path,
    overwrite: bool,
) -> pathlib.Path:
    """Builds one dataset version in a hidden staging directory and renames it to `final`.

    `final` is `<data_dir>/<name>/<config>/<version>`. Nothing there changes until the build has
    finished, so an interrupted run leaves no dataset behind; its staging directory
    (`<data_dir>/.incomplete-<name>-<config>`, not a name TFDS reads as a dataset) is removed by
    the next run. An existing dataset is kept unless `overwrite`.

    Args:
      make_builder: builds the dataset builder given its (staging) data_dir.
      final: where the finished dataset goes.
      overwrite: replace a dataset that already exists.

    Returns:
      `final`.
    """
    if (final / tfds.core.constants.DATASET_INFO_FILENAME).exists() and not overwrite:
        logging.warning("%s exists; kept (overwrite rebuilds it)", final)
        return final
    relative = final.relative_to(final.parents[2])  # <name>/<config>/<version>
    staging = final.parents[2] / f"{STAGING_PREFIX}{relative.parts[0]}-{relative.parts[1]}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        builder = make_builder(os.fspath(staging))
        # TFDS prints "Downloading and preparing dataset Unknown size ..." and "... downloaded
        # and prepared" to stdout unconditionally; nothing is downloaded here.
        builder._log_download_bytes = builder._log_download_done = lambda: None
        builder.download_and_prepare(
            download_dir=staging / "downloads",
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            final.rename(staging / "replaced")
        (staging / relative).rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("wrote %s", final)
    return final
