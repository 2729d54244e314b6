"""Checkpoints: the only module that touches orbax, and where workdirs are resolved.

A workdir holds `config.json` and `checkpoints/<step>/` (orbax CheckpointManager layout). Each
step directory has three items: `state` (the TrainState arrays as host numpy, so a checkpoint
restores onto any device layout), `config` (the run's config as JSON) and `data` (the input
iterator's position, JSON). The manager keeps the latest `keep` steps plus the best one by the
evaluation metric `p1` (MPJPE, lower is better) among those saved with metrics.

`workdir_of` and `paired_tgt_workdir` are the one rule by which inference, evaluation and
fine-tuning find a workdir from a checkpoint path, and a GPC's TGT.
"""

import json
import os
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gentg_jax import files
from gentg_jax.types import PyTree

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
BEST_METRIC = "p1"
_ITEMS = ("state", "config", "data")


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be read (partial write or corrupt files)."""


def config_to_dict(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """A JSON-compatible dict of the config (tuples become lists)."""
    raw = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return json.loads(json.dumps(raw))


def save_config(directory: str | os.PathLike, config: ml_collections.ConfigDict) -> pathlib.Path:
    """Writes `directory/config.json` atomically."""
    return files.write_json(
        pathlib.Path(directory) / CONFIG_FILE, config_to_dict(config), sort_keys=True
    )


def load_config(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config of a workdir, its checkpoints directory or one checkpoint step directory.

    Looks for `config.json` in `path` and up to two directories above it; failing that, reads
    the config saved inside a checkpoint step directory.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no workdir or checkpoint at {path}")
    for directory in (path, path.parent, path.parent.parent):
        if (directory / CONFIG_FILE).is_file():
            with open(directory / CONFIG_FILE) as f:
                return ml_collections.ConfigDict(json.load(f))
    manager, step = _open(path, None)
    return manager.restore_config(step)


def checkpoint_directory(workdir: str | os.PathLike) -> pathlib.Path:
    """Where a workdir's checkpoints live."""
    return pathlib.Path(workdir).absolute() / CHECKPOINTS


class CheckpointManager:
    """Periodic, best-by-P1 and resumable checkpoints in one directory of step directories.

    Every process of a run creates one and calls `save`/`restore` together; orbax writes the
    host-numpy state and JSON items from process 0 only.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, read_only: bool = False):
        if keep < 1:
            raise ValueError(f"keep (config.train.keep_checkpoints) must be >= 1, got {keep}")
        self.directory = pathlib.Path(directory).absolute()
        policies = ocp.checkpoint_managers
        preservation = policies.AnyPreservationPolicy(
            [
                policies.LatestN(n=keep),
                policies.BestN(
                    get_metric_fn=_best_metric,
                    reverse=True,  # sorted descending, the last (kept) one is the lowest P1
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            best_fn=_best_metric,
            best_mode="min",
            preservation_policy=None if read_only else preservation,
            read_only=read_only,
            create=not read_only,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the lowest saved P1, or None when no checkpoint has metrics."""
        scored = [s for s in self.all_steps() if self._manager.metrics(s) is not None]
        return min(scored, key=lambda s: _best_metric(self._manager.metrics(s)), default=None)

    def save(
        self,
        step: int,
        state: PyTree,
        *,
        config: ml_collections.ConfigDict,
        data_state: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> bool:
        """Saves host-numpy `state` (see parallel.DataParallel.unreplicate) at `step`.

        Returns False when `step` is already saved. `metrics` (with key "p1") makes the
        checkpoint a candidate for the best one.
        """
        if step in self.all_steps():
            return False
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(jax.tree.map(np.asarray, state)),
            config=ocp.args.JsonSave(config_to_dict(config)),
            data=ocp.args.JsonSave(data_state or {}),
        )
        return self._manager.save(step, args=args, metrics=metrics)

    def restore(self, step: int, target: PyTree) -> tuple[PyTree, dict[str, Any]]:
        """(state shaped like host-numpy `target`, data-iterator state) of `step`."""
        self._check_step(step)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(jax.tree.map(np.asarray, target)),
            data=ocp.args.JsonRestore(),
        )
        restored = self._restore(step, args)
        return restored.state, dict(restored.data or {})

    def restore_config(self, step: int) -> ml_collections.ConfigDict:
        """The config saved with `step`."""
        self._check_step(step)
        restored = self._restore(step, ocp.args.Composite(config=ocp.args.JsonRestore()))
        return ml_collections.ConfigDict(restored.config)

    def restore_raw(self, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(saved config dict, state as nested dicts of numpy arrays) without a target."""
        self._check_step(step)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore())
        restored = self._restore(step, args)
        return restored.config, restored.state

    def wait(self) -> None:
        """Blocks until asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def _check_step(self, step: int) -> None:
        if step not in self.all_steps():
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {self.directory}; saved: {self.all_steps()}"
            )

    def _restore(self, step: int, args: ocp.args.Composite) -> Any:
        try:
            return self._manager.restore(step, args=args)
        except Exception as error:  # orbax/tensorstore raise many types for damaged files
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} is partial or corrupt: "
                f"{type(error).__name__}: {error}"
            ) from error


def _best_metric(metrics: dict[str, float]) -> float:
    return float(metrics[BEST_METRIC])


def _locate(path: pathlib.Path) -> tuple[pathlib.Path, int | None]:
    """(checkpoints directory, step or None) for a workdir, checkpoints dir or step dir."""
    if not path.exists():
        raise FileNotFoundError(f"no workdir or checkpoint at {path}")
    if (path / CHECKPOINTS).is_dir():
        return path / CHECKPOINTS, None
    if path.name.isdigit() and (path / "state").exists():
        return path.parent, int(path.name)
    if any(p.name.isdigit() for p in path.iterdir()):
        return path, None
    raise FileNotFoundError(f"no checkpoint at {path}: no {CHECKPOINTS}/ or step directories")


def _open(path: str | os.PathLike, step: int | str | None) -> tuple[CheckpointManager, int]:
    if isinstance(step, str) and step not in ("latest", "best"):
        raise ValueError(f"checkpoint step {step!r}: expected an int, 'latest' or 'best'")
    directory, located_step = _locate(pathlib.Path(path))
    manager = CheckpointManager(directory, read_only=True)
    if not manager.all_steps():
        raise FileNotFoundError(f"no checkpoint at {path}: {directory} holds no complete step")
    if step is None or step == "latest":
        step = located_step if located_step is not None else manager.latest_step()
    elif step == "best":
        step = manager.best_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory} was saved with eval metrics")
    return manager, int(step)


def resolve_step(path: str | os.PathLike, step: int | str | None = None) -> int:
    """The concrete step that `step` (None/'latest', 'best' or an int) names under `path`."""
    return _open(path, step)[1]


def restore_params(
    path: str | os.PathLike, step: int | str | None = None, ema: bool = True
) -> tuple[ml_collections.ConfigDict, PyTree]:
    """The saved config and parameters of a checkpoint, for inference.

    Args:
      path: a workdir, its `checkpoints/` directory or one step directory.
      step: None or 'latest' (the newest, or the step directory given), 'best' (lowest P1) or
        an int.
      ema: the EMA parameters (what evaluation uses) instead of the raw ones.

    Returns:
      (config, params): the config saved with that checkpoint and the parameter pytree as
      numpy arrays (jax places them on the default device at first use), whatever device
      layout the run used.

    Raises:
      FileNotFoundError: no checkpoint (or no such step) at `path`.
      CheckpointError: the checkpoint is partial or corrupt.
    """
    manager, step = _open(path, step)
    config, state = manager.restore_raw(step)
    key = "ema_params" if ema else "params"
    if key not in state:
        raise CheckpointError(f"checkpoint {manager.directory / str(step)} has no {key!r}")
    return ml_collections.ConfigDict(config), state[key]


def workdir_of(path: str | os.PathLike) -> pathlib.Path:
    """The workdir holding `path`: itself, or the workdir above its checkpoints/ or step dir."""
    path = pathlib.Path(path)
    for directory in (path, *path.parents[:2]):
        if (directory / CHECKPOINTS).is_dir():
            return directory
    return path


def paired_tgt_workdir(
    gpc_path: str | os.PathLike,
    gpc_config: ml_collections.ConfigDict,
    override: str | os.PathLike | None = None,
) -> pathlib.Path:
    """The TGT workdir a GPC checkpoint is paired with.

    `override` when given; else the GPC's saved `config.tgt_workdir` (absolute, or relative to
    the current directory) when it exists; else a directory of that name beside the GPC
    workdir (both workdirs copied elsewhere together, e.g. to Colab).

    Raises:
      ValueError: the GPC was trained without a TGT (empty tgt_workdir) and no override.
      FileNotFoundError: the TGT workdir is in none of those places.
    """
    if override:
        found = pathlib.Path(override).expanduser()
        if not found.exists():
            raise FileNotFoundError(f"no TGT workdir at {found}")
        return found
    saved = gpc_config.get("tgt_workdir", "")
    if not saved:
        raise ValueError(
            f"the GPC at {gpc_path} was trained without a TGT (empty config.tgt_workdir): name "
            "the TGT workdir to pair it with"
        )
    saved = pathlib.Path(saved).expanduser()
    candidates = [saved, workdir_of(pathlib.Path(gpc_path).absolute()).parent / saved.name]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"the GPC's TGT workdir (config.tgt_workdir={str(saved)!r}) is not at "
        f"{[str(c) for c in candidates]}: name its new place"
    )
