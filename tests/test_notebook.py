"""Executes notebooks/quickstart.ipynb with nbclient against a tiny checkpoint made here.

The checkpoint (random parameters, saved through checkpoint.CheckpointManager in the training
loop's layout) is passed to the notebook through GENTG_CHECKPOINT, so its training cell is
skipped; the install cell is skipped because gentg_jax is importable. Its install branches run
on their own, with gentg_jax hidden and %pip replaced by a stub that only prints its arguments.
"""

import pathlib

import jax
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import gentg_jax
from configs import tgt_base
from gentg_jax import checkpoint
from gentg_jax.models import tgt
from gentg_jax.train import state as state_lib
from tests import helpers

NOTEBOOK = helpers.REPO / "notebooks" / "quickstart.ipynb"


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


# Hides gentg_jax as on a fresh runtime; the %pip stub prints its line and un-hides it.
_FRESH_RUNTIME = """
import sys
sys.modules["gentg_jax"] = None

def _pip(line):
    print("pip", line)
    del sys.modules["gentg_jax"]

get_ipython().register_magic_function(_pip, "line", "pip")
"""


def _run_install_cell(cwd: pathlib.Path) -> str:
    install = nbformat.read(NOTEBOOK, as_version=4).cells[1]
    cells = [nbformat.v4.new_code_cell(_FRESH_RUNTIME), install]
    notebook = nbformat.v4.new_notebook(cells=cells)
    resources = {"metadata": {"path": str(cwd)}}
    client = NotebookClient(notebook, timeout=60, kernel_name="python3", resources=resources)
    client.execute()
    return "".join(output.get("text", "") for output in install.outputs)


def test_install_cell_installs_the_enclosing_clone(tmp_path, monkeypatch):
    monkeypatch.delenv("GENTG_REPO_URL", raising=False)
    clone = tmp_path / "clone"
    (clone / "gentg_jax").mkdir(parents=True)
    (clone / "gentg_jax" / "__init__.py").write_text('__version__ = "in-clone"\n')
    (clone / "pyproject.toml").write_text('[project]\nname = "gentg-jax"\n')
    (clone / "notebooks").mkdir()
    text = _run_install_cell(clone / "notebooks")
    assert f'pip install -q -e "{clone.resolve()}"' in text
    assert f"gentg_jax in-clone from {clone.resolve() / 'gentg_jax'}" in text


def test_install_cell_installs_from_the_url_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("GENTG_REPO_URL", "git+https://example.org/owner/gentg-jax.git")
    text = _run_install_cell(tmp_path)
    assert 'pip install -q "gentg-jax @ git+https://example.org/owner/gentg-jax.git"' in text
    assert f"gentg_jax {gentg_jax.__version__} from" in text


def test_install_cell_without_clone_or_url_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("GENTG_REPO_URL", raising=False)
    with pytest.raises(CellExecutionError, match="Set the environment variable GENTG_REPO_URL"):
        _run_install_cell(tmp_path)
