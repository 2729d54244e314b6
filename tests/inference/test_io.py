"""The infer command's files: both input formats through experiments.infer."""

import subprocess
import sys

import numpy as np

from gentg_jax import skeleton
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
