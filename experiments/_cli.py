"""Flags and start-up that the training and evaluation entrypoints share.

The flags are defined on behalf of the calling entrypoint (this module disclaims them), so each
entrypoint's --help lists them as its own.
"""

import dataclasses
import sys
from collections.abc import Callable

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from gentg_jax import logs
from gentg_jax.train import loop, parallel

flags.disclaim_key_flags()


@dataclasses.dataclass(frozen=True)
class RunFlags:
    """The parsed values of --config, --workdir and --jax_distributed."""

    config: flags.FlagHolder
    workdir: flags.FlagHolder
    distributed: flags.FlagHolder


def define_run_flags(config_default: str | None, config_help: str, workdir_help: str) -> RunFlags:
    """Defines --config (a locked config file[:variant] with --config.* overrides), a required
    --workdir and --jax_distributed for the calling entrypoint."""
    return RunFlags(
        config=config_flags.DEFINE_config_file(
            "config", config_default, config_help, lock_config=True
        ),
        workdir=flags.DEFINE_string("workdir", None, workdir_help, required=True),
        distributed=flags.DEFINE_bool(
            "jax_distributed", False, "Call jax.distributed.initialize() (multi-host runs)."
        ),
    )


def start(argv: list[str], run_flags: RunFlags) -> None:
    """Rejects stray arguments, joins the multi-host job when asked, logs process and devices."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if run_flags.distributed.value:
        parallel.initialize_distributed()
    logging.info(
        "process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
    )


def with_setup(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """`main` with the project's logging setup (`logs.setup_logging`) and a one-line Ctrl-C:
    the interruption's message (where a rerun resumes) on stderr, exit status 130."""

    def wrapped(argv: list[str]) -> None:
        logs.setup_logging()
        try:
            main(argv)
        except KeyboardInterrupt as interrupt:
            print(str(interrupt) or "interrupted", file=sys.stderr, flush=True)
            sys.exit(130)

    return wrapped


def run(main: Callable[[list[str]], None]) -> None:
    """`app.run(main)` for an entrypoint, with `with_setup`."""
    app.run(with_setup(main))


def training_main(config_default: str) -> Callable[[list[str]], None]:
    """The main of a training entrypoint whose --config defaults to `config_default`: it runs
    train_and_evaluate(config, workdir), resuming from the workdir's checkpoints."""
    run_flags = define_run_flags(
        config_default, "Training config file[:variant].", "Run directory (checkpoints, logs)."
    )

    def main(argv: list[str]) -> None:
        start(argv, run_flags)
        result = loop.train_and_evaluate(run_flags.config.value, run_flags.workdir.value)
        if result.eval_metrics:
            logging.info("final eval: %s", result.eval_metrics)

    return main
