"""Executes the notebooks with nbclient against tiny runs made here.

00_quickstart gets a tiny checkpoint (random parameters, saved through
checkpoint.CheckpointManager in the training loop's layout) through GENTG_CHECKPOINT, so its
training cell is skipped. 01-04 get a quickstart-like workdir (tgt/ and gpc/ of a few steps of
tiny TGT and GPC runs with evaluations) through GENTG_WORKDIR and the tiny dataset through
GENTG_DATA_DIR, built once for this module. The install cell is skipped because gentg_jax is
importable; every notebook has the same install cell, whose branches run on their own, with
gentg_jax hidden and %pip replaced by a stub that only prints its arguments.
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
from gentg_jax.train import loop
from gentg_jax.train import state as state_lib
from tests import helpers

NOTEBOOKS = helpers.REPO / "notebooks"
NOTEBOOK = NOTEBOOKS / "00_quickstart.ipynb"


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


def _execute(path: pathlib.Path, cwd: pathlib.Path) -> tuple[str, int]:
    """Runs a notebook top to bottom; returns its printed text and how many images it showed."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "\n".join(output.get("text", "") for output in outputs)
    images = sum("image/png" in output.get("data", {}) for output in outputs)
    return text, images


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    _tiny_checkpoint(tmp_path / "tgt")
    monkeypatch.setenv("GENTG_CHECKPOINT", str(tmp_path / "tgt"))
    monkeypatch.setenv("GENTG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text, _ = _execute(NOTEBOOK, tmp_path)
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


@pytest.fixture(scope="module")
def quickstart_runs(tiny_data_dir, compilation_cache, tmp_path_factory) -> pathlib.Path:
    """A quickstart-like workdir: tgt/ and gpc/ of 4 steps each, evaluated at steps 2 and 4."""
    root = tmp_path_factory.mktemp("quickstart_runs")
    schedule = {"num_steps": 4, "log_every": 1, "eval_every": 2}
    loop.train_and_evaluate(helpers.tiny_config(tiny_data_dir, **schedule), str(root / "tgt"))
    gpc = helpers.tiny_gpc_config(tiny_data_dir, str(root / "tgt"), **schedule)
    loop.train_and_evaluate(gpc, str(root / "gpc"))
    return root


@pytest.mark.parametrize(
    ("name", "printed", "num_images"),
    [
        ("01_data_checks", "train: 12 sequences", 3),
        ("02_train_tgt_logs", "4 logged steps, last 4", 1),
        ("03_train_gpc_logs", "step 4: coarse P1", 1),
        ("04_eval_plots", "3 of 3 actions", 6),
    ],
)
def test_log_and_evaluation_notebooks_run(
    name, printed, num_images, quickstart_runs, tiny_data_dir, monkeypatch
):
    monkeypatch.setenv("GENTG_WORKDIR", str(quickstart_runs))
    monkeypatch.setenv("GENTG_DATA_DIR", tiny_data_dir)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    text, images = _execute(NOTEBOOKS / f"{name}.ipynb", quickstart_runs)
    assert printed in text
    assert images == num_images


def test_every_notebook_has_the_same_install_cell():
    install = nbformat.read(NOTEBOOK, as_version=4).cells[1].source
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "00_quickstart.ipynb",
        "01_data_checks.ipynb",
        "02_train_tgt_logs.ipynb",
        "03_train_gpc_logs.ipynb",
        "04_eval_plots.ipynb",
    ]
    for name in names:
        assert nbformat.read(NOTEBOOKS / name, as_version=4).cells[1].source == install, name
