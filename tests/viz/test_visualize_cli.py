"""experiments/visualize.py end to end, and its usage errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import app, flags
from absl.testing import flagsaver
from PIL import Image

from tests import helpers


def test_cli_end_to_end(result, tmp_path):
    np.savez(tmp_path / "out.npz", **result)
    (tmp_path / "eval.json").write_text(json.dumps(helpers.evaluation_dict()))
    run_eval = tmp_path / "runs" / "e2e" / "eval" / "step_00000010.json"
    run_eval.parent.mkdir(parents=True)
    run_eval.write_text(json.dumps({"step": 10, "tables": helpers.evaluator_tables()}))
    out = tmp_path / "viz"
    command = [sys.executable, "-m", "experiments.visualize", f"--npz={tmp_path / 'out.npz'}"]
    command += [f"--out={out}", "--frames=0,5", f"--eval_json={tmp_path / 'eval.json'},{run_eval}"]
    command += ["--max_frames=6", "--dpi=30"]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no ffmpeg: GIF only
    subprocess.run(command, cwd=helpers.REPO, env=env, check=True, capture_output=True, timeout=120)
    expected = ["animation.gif", "calibration.png", "frame_00000.png", "frame_00005.png"]
    expected += ["per_action_p1.png", "per_action_p2.png"]
    assert sorted(p.name for p in out.iterdir()) == expected
    with Image.open(out / "animation.gif") as gif:
        assert gif.n_frames == 6


def run_main(argv):
    from experiments import visualize

    with flagsaver.flagsaver():
        flags.FLAGS(["visualize", *argv])
        visualize.main.__wrapped__(["visualize"])  # the library's errors, not the CLI's line


def test_cli_usage_errors(tmp_path):
    with pytest.raises(app.UsageError, match="--npz, --eval_json or both"):
        run_main([f"--out={tmp_path}"])
    with pytest.raises(app.UsageError, match="comma-separated integers"):
        run_main([f"--out={tmp_path}", "--npz=x.npz", "--frames=0,a"])
    with pytest.raises(FileNotFoundError, match="no evaluation JSON"):
        run_main([f"--out={tmp_path}", f"--eval_json={tmp_path / 'no.json'}"])
    with pytest.raises(FileNotFoundError, match="no result file"):
        run_main([f"--out={tmp_path}", f"--npz={tmp_path / 'no.npz'}"])
    (tmp_path / "a.json").write_text(json.dumps(helpers.evaluation_dict()))
    with pytest.raises(ValueError, match="method .tgt. is in more than one evaluation file"):
        run_main([f"--out={tmp_path}", f"--eval_json={tmp_path / 'a.json'},{tmp_path / 'a.json'}"])
    (tmp_path / "b.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="b.json has none of 'per_action'"):
        run_main([f"--out={tmp_path}", f"--eval_json={tmp_path / 'b.json'}"])
