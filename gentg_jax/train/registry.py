"""The tasks a training run can optimise, by `config.task` (a plain dict, as scenic's trainers)."""

import ml_collections

from gentg_jax.train import gpc_tasks, tasks

TASKS = {"tgt": tasks.TGTTask, "gpc": gpc_tasks.GPCTask, "e2e": gpc_tasks.E2ETask}


def get_task(config: ml_collections.ConfigDict, workdir: str | None = None) -> tasks.Task:
    """The task named by `config.task`, built from `config`, or for a training run in `workdir`
    from `config` as the task resumes it there (`Task.resumed_config`)."""
    if config.task not in TASKS:
        raise ValueError(f"config.task={config.task!r} is unknown; known tasks: {sorted(TASKS)}")
    task_class = TASKS[config.task]
    if workdir is not None:
        config = task_class.resumed_config(config, workdir)
    return task_class(config)
