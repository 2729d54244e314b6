"""The quickstart end to end at a tiny size: data, TGT, GPC, evaluation, inference, GIF."""

import json
import pathlib

import numpy as np
from PIL import Image

from experiments import quickstart


def test_quickstart_runs_end_to_end_and_reuses_what_exists(tmp_path, capsys):
    options = quickstart.Options(
        workdir=str(tmp_path / "qs"),
        frames_per_sequence=40,
        subjects=("S1", "S9"),
        actions=("Sitting", "Walking"),
        tgt_steps=3,
        gpc_steps=2,
        max_windows=4,  # one 40-frame sequence (2 windows) of each action
        gif_frames=4,
    )
    outputs = quickstart.run(options)

    summary = outputs["summary"]
    assert np.isfinite(summary["p1"]) and summary["p1"] > 0
    tables = json.loads(pathlib.Path(outputs["tables"]["json"]).read_text())
    assert tables  # per-action tables were written
    result = np.load(outputs["infer_result"])
    frames = result["keypoints_2d"].shape[0]
    assert result["coarse_3d"].shape == (frames, 17, 3)
    assert result["refined_3d"].shape == (frames, 17, 3)
    gif = Image.open(outputs["animation"][0])
    assert gif.n_frames == 4
    assert list(outputs["seconds"]) == ["data", "tgt", "gpc", "tables", "infer", "gif"]
    assert sorted(p.name for p in (tmp_path / "qs" / "tgt" / "eval").glob("*.json")) == [
        "step_00000002.json",  # the TGT is evaluated twice: at 2 of its 3 steps and at the end
        "step_00000003.json",
    ]
    printed = capsys.readouterr().out
    assert "Evaluated on 2 of 8 test sequences (4 of 16 windows), 2 of 2 actions" in printed

    tgt_checkpoints = sorted((tmp_path / "qs" / "tgt" / "checkpoints").iterdir())
    again = quickstart.run(options)  # reuses the dataset and the finished runs
    assert sorted((tmp_path / "qs" / "tgt" / "checkpoints").iterdir()) == tgt_checkpoints
    assert again["summary"]["p1"] == summary["p1"]
