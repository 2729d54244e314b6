"""The infer command's files: both input formats through experiments.infer."""

import subprocess
import sys

import numpy as np
import pytest

from gentg_jax import inference, skeleton
from gentg_jax.data import videopose3d
from tests import helpers
from tests.inference import common


def _run_cli(*args):
    command = [sys.executable, "-m", "experiments.infer", "--config", "configs/infer_offline.py"]
    return subprocess.run([*command, *args], cwd=helpers.REPO, capture_output=True, text=True)


def test_infer_cli_reads_both_formats(tmp_path, tgt_workdir, predictor):
    keypoints, scores = common.sequence(30, seed=8)
    simple = tmp_path / "seq.npz"
    np.savez(simple, keypoints=keypoints, scores=scores, image_size=np.asarray(common.SIZE))
    output = tmp_path / "out" / "result.npz"
    result = _run_cli(
        f"--config.checkpoint={tgt_workdir}", f"--input={simple}", f"--output={output}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(output) as written:
        assert sorted(written.files) == sorted(
            ["keypoints_2d", "scores", "image_size", "coarse_3d", "uncertainty"]
        )
        want = predictor.predict(keypoints, scores, common.SIZE)
        np.testing.assert_allclose(written["coarse_3d"], want["coarse_3d"], atol=1e-5)
        np.testing.assert_array_equal(written["keypoints_2d"], keypoints)

    custom = tmp_path / "data_2d_custom_test.npz"
    metadata = {"layout_name": "coco", "video_metadata": {"clip": {"w": 1000, "h": 1002}}}
    np.savez(custom, positions_2d={"clip": {"custom": [keypoints]}}, metadata=metadata)
    output = tmp_path / "custom.npz"
    result = _run_cli(
        f"--config.checkpoint={tgt_workdir}", f"--input={custom}", f"--output={output}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(output) as written:
        want = predictor.predict(keypoints, None, common.SIZE, layout="coco")
        np.testing.assert_allclose(written["coarse_3d"], want["coarse_3d"], atol=1e-5)
        np.testing.assert_allclose(written["keypoints_2d"], skeleton.coco_to_h36m(keypoints))
        np.testing.assert_array_equal(written["image_size"], common.SIZE)


class _RunsCode:
    """Pickles as a call of open(marker, "w"): what a crafted file could do with any call."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_bad_input_files_are_clear_errors_and_never_run_code(tmp_path):
    marker = tmp_path / "marker"
    crafted = tmp_path / "data_2d_custom_crafted.npz"
    np.savez(crafted, positions_2d={"clip": {"custom": [_RunsCode(marker)]}})
    with pytest.raises(videopose3d.UnsafeFileError, match=f"{crafted}: 'positions_2d'.*io.open"):
        inference.read_input(crafted)
    np.savez(
        crafted,
        positions_2d={"clip": {"custom": [np.zeros((4, 17, 2))]}},
        metadata=_RunsCode(marker),
    )
    with pytest.raises(videopose3d.UnsafeFileError, match="'metadata'"):
        inference.read_input(crafted)
    assert not marker.exists()
    pickled = tmp_path / "seq.npy"
    np.save(pickled, np.array([_RunsCode(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=f"{pickled}: not an npz file"):
        inference.read_input(pickled)
    assert not marker.exists()


def test_infer_cli_errors_are_one_line(tmp_path, tgt_workdir):
    keypoints, scores = common.sequence(30, seed=8)
    no_size = tmp_path / "seq.npz"
    np.savez(no_size, keypoints=keypoints, scores=scores)
    output = tmp_path / "out.npz"
    result = _run_cli(
        f"--config.checkpoint={tgt_workdir}", f"--input={no_size}", f"--output={output}"
    )
    assert result.returncode == 1 and not output.exists()
    assert result.stderr.strip().splitlines() == [
        f"infer: {no_size} has no image_size and the config gives none: add image_size=(w, h) "
        "(pixels) to the npz, or pass --config.image_size='(W, H)' (VideoPose3D custom files "
        "carry it in metadata['video_metadata'])"
    ]
