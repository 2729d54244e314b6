"""Executes notebooks/quickstart.ipynb with nbclient against a tiny checkpoint made here.

The checkpoint (random parameters, saved through checkpoint.CheckpointManager in the training
loop's layout) is passed to the notebook through GENTG_CHECKPOINT, so its training cell is
skipped; the install cell is skipped because gentg_jax is importable.
"""

import pathlib

import jax
import nbformat
import numpy as np
from nbclient import NotebookClient

from configs import tgt_base
from gentg_jax import checkpoint
from gentg_jax.models import tgt
from gentg_jax.train import state as state_lib

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def _tiny_checkpoint(workdir: pathlib.Path) -> None:
    config = tgt_base.get_config("tiny")
    config.data.num_frames = 16
    config.model.update(dim=32, max_frames=16)
    model = tgt.TemporalGraphLimbTransformer.from_config(config.model)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), np.zeros((1, 16, 17, 2)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(np.float32), shapes)
    state = state_lib.create_train_state(
        params["params"], state_lib.make_optimizer(config.train), jax.random.PRNGKey(0)
    )
    manager = checkpoint.CheckpointManager(checkpoint.checkpoint_directory(workdir))
    manager.save(1, jax.tree.map(np.asarray, state.to_checkpoint()), config=config)
    manager.wait()
    manager.close()
    checkpoint.save_config(workdir, config)


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    _tiny_checkpoint(tmp_path / "tgt")
    monkeypatch.setenv("GENTG_CHECKPOINT", str(tmp_path / "tgt"))
    monkeypatch.setenv("GENTG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    text = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "window T = 16" in text
    assert "coarse_3d    (120, 17, 3)" in text and "uncertainty  (120, 17)" in text
    assert "MPJPE of the coarse pose" in text
    assert (tmp_path / "quickstart.gif").stat().st_size > 0
    assert not (tmp_path / "data").exists()  # nothing was trained
