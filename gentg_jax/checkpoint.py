"""Checkpoints: the only module that touches orbax, and where workdirs are resolved.

A workdir holds `config.json` and `checkpoints/<step>/` (orbax CheckpointManager layout). Each
step directory has three items: `state` (the TrainState arrays as host numpy, so a checkpoint
restores onto any device layout), `config` (the run's config as JSON) and `data` (the input
iterator's position, JSON). The manager keeps the latest `keep` steps plus the best one by the
evaluation metric `p1` (MPJPE, lower is better) among those saved with metrics.

Integrity: every saved step carries `checksum.json` (the sha256 of each file of its three
items), written by orbax's post-finalization callback into the step's temporary directory, so it
is committed by the same rename as the step. Restoring verifies it first; `restore_latest` (the
training resume), `load_params`/`restore_params` (inference, evaluation) fall back from a
damaged newest (or best) step to the newest intact one with a warning naming the skipped steps,
and errors are one line (`CheckpointError`). A step without the file (saved before checksums)
is read unverified.

`workdir_of` and `paired_tgt_workdir` are the one rule by which inference, evaluation and
fine-tuning find a workdir from a checkpoint path, and a GPC's TGT; `restore_paired_tgt` checks
that TGT against the provenance the GPC recorded when it was trained (`config.tgt_provenance`:
the TGT workdir, step and a sha256 fingerprint of its EMA parameters) and refuses another one
unless allowed (`allow_tgt_mismatch`).
"""

import hashlib
import json
import os
import pathlib
import shutil
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from gentg_jax import files
from gentg_jax.types import PyTree

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
DAMAGED = "checkpoints_damaged"  # where a resuming run moves damaged steps, beside checkpoints/
BEST_METRIC = "p1"
_ITEMS = ("state", "config", "data")
# Files orbax rewrites when it commits a step (after the callback): not covered by checksums.
_UNCHECKED = ("_CHECKPOINT_METADATA", "commit_success.txt")


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be read (partial write or corrupt files)."""


class TGTMismatchError(CheckpointError):
    """A GPC is paired with a TGT other than the one it was trained on."""


def _summary(error: BaseException, limit: int = 240) -> str:
    """`Type: first line of the message`, shortened (tensorstore messages run to kilobytes)."""
    text = " ".join(str(error).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
    manager, steps = _open(path, None)
    return manager.first_intact(steps, manager.restore_config)[1]


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
        # A reader is an orbax manager that never saves, creates nor deletes: orbax's own
        # read_only mode would log a warning ("Given directory is read only") on every load.
        self._read_only = read_only
        self._saving: int | None = None
        options = ocp.CheckpointManagerOptions(
            best_fn=_best_metric,
            best_mode="min",
            preservation_policy=None if read_only else preservation,
            create=not read_only,
            # A writer holds the workdir lock, so leftovers of a killed save are nobody's.
            cleanup_tmp_directories=not read_only,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._write_checksum),
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the lowest saved P1, or None when no checkpoint has metrics."""
        return next(iter(self.scored_steps()), None)

    def scored_steps(self) -> list[int]:
        """The steps saved with metrics, lowest P1 first."""
        scored = [s for s in self.all_steps() if self._manager.metrics(s) is not None]
        return sorted(scored, key=lambda s: _best_metric(self._manager.metrics(s)))

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
        if self._read_only:
            raise ValueError(f"{self.directory} was opened read-only; it cannot save")
        if step in self.all_steps():
            return False
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(jax.tree.map(np.asarray, state)),
            config=ocp.args.JsonSave(config_to_dict(config)),
            data=ocp.args.JsonSave(data_state or {}),
        )
        self._manager.wait_until_finished()  # one save in flight: the callback knows its step
        self._saving = step
        return self._manager.save(step, args=args, metrics=metrics)

    def _write_checksum(self) -> None:
        """orbax's post-finalization callback: the step's items are complete, its temporary
        directory not yet renamed into place; the checksum goes in with them."""
        step = self._saving
        if step is None or jax.process_index() != 0:
            return
        pending = sorted(self.directory.glob(f"{step}.orbax-checkpoint-tmp*"))
        for directory in [*pending, self.directory / str(step)]:
            if directory.is_dir():
                files.write_checksums(directory, exclude=_UNCHECKED)
                return
        raise CheckpointError(f"step {step} is not in {self.directory}: cannot write its checksum")

    def verify(self, step: int) -> str | None:
        """What is wrong with `step`'s files (None: intact, or saved without a checksum)."""
        directory = self.directory / str(step)
        if not directory.is_dir():
            return None  # not a step: restoring it says so
        if missing := [item for item in _ITEMS if not (directory / item).is_dir()]:
            return f"items {missing} are missing"
        try:
            return files.verify_checksums(directory)
        except FileNotFoundError:
            logging.debug("%s has no %s: read unverified", directory, files.CHECKSUM_FILE)
            return None

    def restore_latest(self, target: PyTree) -> tuple[int, PyTree, dict[str, Any]] | None:
        """(step, state, data state) of the newest intact step; None without checkpoints.

        Damaged newer steps are skipped with a warning and, unless the manager is read-only,
        moved to `<workdir>/checkpoints_damaged/` so that the resumed run can save those steps
        again.
        """
        steps = self.all_steps()[::-1]
        if not steps:
            return None
        step, restored = self.first_intact(steps, lambda s: self.restore(s, target))
        return step, *restored

    def first_intact(self, steps: list[int], restore: Callable[[int], Any]) -> tuple[int, Any]:
        """(step, restore(step)) of the first of `steps` that verifies and restores.

        Raises:
          CheckpointError: none does (the message lists each step's problem).
        """
        skipped = []
        for step in steps:
            problem = self.verify(step)
            if problem is None:
                try:
                    result = restore(step)
                except CheckpointError as error:
                    problem = str(error).partition(": ")[2] or str(error)
                else:
                    self._report_skipped(skipped, step)
                    return step, result
            skipped.append((step, problem))
        if len(skipped) == 1:
            step, problem = skipped[0]
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} is partial or corrupt: {problem}"
            )
        listed = "; ".join(f"step {s}: {p}" for s, p in skipped)
        raise CheckpointError(
            f"no intact checkpoint in {self.directory}: all are partial or corrupt ({listed})"
        )

    def _report_skipped(self, skipped: list[tuple[int, str]], used: int) -> None:
        for step, problem in skipped:
            moved = ""
            if not self._read_only and jax.process_index() == 0:
                moved = f"; moved to {_move_aside(self.directory, step)}"
            logging.warning(
                "skipped damaged checkpoint %s (%s%s); using step %d",
                self.directory / str(step),
                problem,
                moved,
                used,
            )
        if skipped and not self._read_only:
            self._manager.reload()

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
                f"checkpoint {self.directory / str(step)} is partial or corrupt: {_summary(error)}"
            ) from None  # the cause holds orbax's failed asyncio reads: let them go now


def _move_aside(directory: pathlib.Path, step: int) -> pathlib.Path:
    """Moves the damaged `directory/<step>` to `<workdir>/checkpoints_damaged/<step>[-n]`."""
    target = directory.parent / DAMAGED / str(step)
    suffix = 1
    while target.exists():
        target, suffix = directory.parent / DAMAGED / f"{step}-{suffix}", suffix + 1
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(directory / str(step)), str(target))
    return target


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


def _open(path: str | os.PathLike, step: int | str | None) -> tuple[CheckpointManager, list[int]]:
    """(a read-only manager, the steps `step` may mean, preferred first).

    None/'latest': the step directory given, else every step newest first; 'best': the
    evaluated steps by P1; an int: that step alone. Restoring takes the first intact one.
    """
    if isinstance(step, str) and step not in ("latest", "best"):
        raise ValueError(f"checkpoint step {step!r}: expected an int, 'latest' or 'best'")
    directory, located_step = _locate(pathlib.Path(path))
    manager = CheckpointManager(directory, read_only=True)
    steps = manager.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoint at {path}: {directory} holds no complete step")
    if step is None or step == "latest":
        return manager, [located_step] if located_step is not None else steps[::-1]
    if step == "best":
        if not (scored := manager.scored_steps()):
            raise FileNotFoundError(f"no checkpoint in {directory} was saved with eval metrics")
        return manager, scored
    return manager, [int(step)]


def resolve_step(path: str | os.PathLike, step: int | str | None = None) -> int:
    """The concrete step that `step` (None/'latest', 'best' or an int) names under `path`
    (not verified: `load_params` may fall back to an older one)."""
    return _open(path, step)[1][0]


class Restored(NamedTuple):
    """A restored checkpoint: the step actually read, its saved config and parameters."""

    step: int
    config: ml_collections.ConfigDict
    params: PyTree


def load_params(
    path: str | os.PathLike, step: int | str | None = None, ema: bool = True
) -> Restored:
    """`restore_params` with the step that was read (see there)."""
    manager, steps = _open(path, step)
    found, (config, state) = manager.first_intact(steps, manager.restore_raw)
    key = "ema_params" if ema else "params"
    if key not in state:
        raise CheckpointError(f"checkpoint {manager.directory / str(found)} has no {key!r}")
    return Restored(found, ml_collections.ConfigDict(config), state[key])


def restore_params(
    path: str | os.PathLike, step: int | str | None = None, ema: bool = True
) -> tuple[ml_collections.ConfigDict, PyTree]:
    """The saved config and parameters of a checkpoint, for inference.

    Args:
      path: a workdir, its `checkpoints/` directory or one step directory.
      step: None or 'latest' (the newest intact step, or the step directory given), 'best'
        (the intact step of lowest P1) or an int. Damaged newer (better) steps are skipped
        with a warning naming them.
      ema: the EMA parameters (what evaluation uses) instead of the raw ones.

    Returns:
      (config, params): the config saved with that checkpoint and the parameter pytree as
      numpy arrays (jax places them on the default device at first use), whatever device
      layout the run used.

    Raises:
      FileNotFoundError: no checkpoint (or no such step) at `path`.
      CheckpointError: the checkpoint (every candidate step) is partial or corrupt.
    """
    restored = load_params(path, step, ema)
    return restored.config, restored.params


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
    """The TGT workdir a GPC checkpoint is paired with (where to look; `restore_paired_tgt`
    then checks it is the TGT the GPC was trained on).

    `override` when given; else the TGT workdir the GPC recorded (`tgt_provenance.workdir`,
    absolute), or its saved `config.tgt_workdir` (absolute, or relative to the current
    directory) when it exists; else a directory of that name beside the GPC workdir (both
    workdirs copied elsewhere together, e.g. to Colab).

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
    recorded = gpc_config.get("tgt_provenance") or {}
    if not recorded:
        logging.warning(
            "the GPC at %s was trained before TGT provenance was recorded: it cannot be checked "
            "that the TGT found is the one it was trained on",
            gpc_path,
        )
    saved = pathlib.Path(saved).expanduser()
    candidates = [pathlib.Path(p) for p in [recorded.get("workdir")] if p]
    candidates += [saved, workdir_of(pathlib.Path(gpc_path).absolute()).parent / saved.name]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"the GPC's TGT workdir (config.tgt_workdir={str(saved)!r}) is not at "
        f"{[str(c) for c in candidates]}: name its new place"
    )


def params_fingerprint(params: PyTree) -> str:
    """sha256 over the leaves of a parameter tree in tree order (path, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        array = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def tgt_provenance(workdir: str | os.PathLike, restored: Restored) -> dict[str, Any]:
    """What a GPC records of its TGT: absolute workdir, step and EMA-parameter fingerprint."""
    return {
        "workdir": str(pathlib.Path(workdir).absolute()),
        "step": int(restored.step),
        "fingerprint": params_fingerprint(restored.params),
    }


def restore_paired_tgt(
    tgt_workdir: str | os.PathLike,
    recorded: dict[str, Any] | None = None,
    *,
    allow_mismatch: bool = False,
    gpc: str = "the GPC",
) -> tuple[Restored, dict[str, Any]]:
    """The TGT (EMA parameters) a GPC pairs with, checked against the GPC's record.

    Args:
      tgt_workdir: where the TGT is (see `paired_tgt_workdir`).
      recorded: the GPC's `config.tgt_provenance`; None/empty (a GPC not trained yet, or trained
        before provenance existed) reads the latest intact step unchecked.
      allow_mismatch: use a TGT whose parameters differ from the record (with a warning).
      gpc: names the GPC in messages.

    Returns:
      (the restored TGT at the recorded step, or the latest when that step is gone; its
      provenance as the GPC records it).

    Raises:
      TGTMismatchError: the TGT's parameters are not those the GPC was trained on, naming
        both workdirs, steps and fingerprints (unless allow_mismatch).
    """
    if recorded and not isinstance(recorded, dict):
        recorded = recorded.to_dict()
    if not recorded:
        restored = load_params(tgt_workdir, None, ema=True)
        return restored, tgt_provenance(tgt_workdir, restored)
    step = int(recorded["step"])
    steps = _open(tgt_workdir, None)[0].all_steps()
    restored = load_params(tgt_workdir, step if step in steps else None, ema=True)
    found = tgt_provenance(tgt_workdir, restored)
    if found["fingerprint"] != recorded.get("fingerprint"):
        gone = "" if step in steps else f" (step {step} is no longer there; steps: {steps})"
        message = (
            f"{gpc} was trained on the TGT at {recorded.get('workdir')} step {step} (parameters "
            f"sha256 {str(recorded.get('fingerprint'))[:16]}), but the TGT found at "
            f"{found['workdir']} step {found['step']} has sha256 {found['fingerprint'][:16]}"
            f"{gone}: pair it with the TGT it was trained on, or accept this one with "
            "allow_tgt_mismatch (load_predictor(..., allow_tgt_mismatch=True), "
            "--config.allow_tgt_mismatch=True, evaluate --allow_tgt_mismatch)"
        )
        if not allow_mismatch:
            raise TGTMismatchError(message)
        logging.warning("%s; using it anyway (allow_tgt_mismatch)", message)
    return restored, found
