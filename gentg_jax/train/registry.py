"""The tasks a training run can optimise, by `config.task` (a plain dict, as scenic's trainers)."""

import ml_collections

from gentg_jax.train import gpc_tasks, tasks

TASKS = {"tgt": tasks.TGTTask, "gpc": gpc_tasks.GPCTask, "e2e": gpc_tasks.E2ETask}


def get_task(config: ml_collections.ConfigDict) -> tasks.Task:
    """The task named by `config.task`, built from `config`."""
    if config.task not in TASKS:
        raise ValueError(f"config.task={config.task!r} is unknown; known tasks: {sorted(TASKS)}")
    return TASKS[config.task](config)
