"""Tests for gentg_jax/viz.py and experiments/visualize.py on a synthetic 12-frame result."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from absl import app, flags
from absl.testing import flagsaver
from PIL import Image

from gentg_jax import viz

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_FRAMES = 12

# A person standing 4.5 m in front of the camera, facing it, in the camera frame (y down): hips
# at the origin, feet at y = +0.88 m, head at y = -0.7 m.
STANDING = np.array(
    [
        [0.0, 0.0, 0.0], [-0.13, 0.0, 0.0], [-0.13, 0.45, 0.0], [-0.13, 0.88, 0.05],
        [0.13, 0.0, 0.0], [0.13, 0.45, 0.0], [0.13, 0.88, 0.05], [0.0, -0.23, 0.0],
        [0.0, -0.48, 0.0], [0.0, -0.58, -0.03], [0.0, -0.7, 0.0], [0.16, -0.45, 0.0],
        [0.42, -0.45, 0.0], [0.65, -0.45, 0.0], [-0.16, -0.45, 0.0], [-0.3, -0.22, 0.0],
        [-0.33, 0.02, -0.1],
    ],
    np.float32,
)  # fmt: skip


def make_result(num_frames=NUM_FRAMES, optional=True):
    """A waving arm; 2D by pinhole projection of the absolute pose; noisy predictions."""
    rng = np.random.default_rng(0)
    pose = np.repeat(STANDING[None], num_frames, axis=0)
    pose[:, 13, 1] += 0.2 * np.sin(np.arange(num_frames) / 2)  # left wrist moves every frame
    absolute = pose + np.array([0.0, 0.0, 4.5], np.float32)
    keypoints = absolute[..., :2] / absolute[..., 2:] * 1145.0 + np.array([512.0, 515.0])
    result = {
        "keypoints_2d": keypoints.astype(np.float32),
        "image_size": np.array([1000, 1002], np.int32),
        "coarse_3d": (pose + rng.normal(0, 0.02, pose.shape)).astype(np.float32),
        "uncertainty": rng.uniform(0.01, 0.08, (num_frames, 17)).astype(np.float32),
    }
    if optional:
        result["scores"] = rng.uniform(0.2, 1.0, (num_frames, 17)).astype(np.float32)
        result["refined_3d"] = (pose + rng.normal(0, 0.01, pose.shape)).astype(np.float32)
        result["ground_truth_3d"] = absolute.astype(np.float32)  # absolute on purpose
    return result


@pytest.fixture(name="result")
def fixture_result():
    return make_result()


@pytest.fixture(name="no_ffmpeg")
def fixture_no_ffmpeg(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)


def fake_ffmpeg(tmp_path, body):
    """An executable named ffmpeg whose script gets the output path (the last argument) as $out."""
    script = tmp_path / "bin" / "ffmpeg"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nfor out; do :; done\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_camera_to_plot_is_a_rotation_that_stands_the_person_up():
    plot = viz.camera_to_plot(STANDING)
    head, ankles = plot[10], plot[[3, 6]]
    assert np.all(head[2] > ankles[:, 2] + 1.5)  # up is +z in the plot
    basis = viz.camera_to_plot(np.eye(3))
    np.testing.assert_allclose(np.linalg.det(basis), 1.0)  # not mirrored
    np.testing.assert_allclose(plot[:, 0], STANDING[:, 0])  # the camera's right stays right


def test_animate_writes_gif_with_every_frame(result, tmp_path, no_ffmpeg):
    paths = viz.animate(result, tmp_path / "out" / "anim.gif", fps=20)
    assert paths == [tmp_path / "out" / "anim.gif"]
    with Image.open(paths[0]) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == NUM_FRAMES
        assert gif.info["duration"] == 50
        assert gif.size == viz.render_frame(result, 0, dpi=72).shape[1::-1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim.gif"]  # no temp left


def test_animate_stride_and_max_frames(result, tmp_path, no_ffmpeg):
    (path,) = viz.animate(result, tmp_path / "a.gif", stride=5, dpi=30)  # frames 0, 5, 10
    with Image.open(path) as gif:
        assert gif.n_frames == 3
    (path,) = viz.animate(result, tmp_path / "b.gif", stride=2, max_frames=4, dpi=30)
    with Image.open(path) as gif:
        assert gif.n_frames == 4


def test_animate_streams_raw_frames_to_ffmpeg(result, tmp_path, monkeypatch):
    ffmpeg = fake_ffmpeg(tmp_path, 'cat > "$out"')  # keeps the raw RGB stream as the "video"
    monkeypatch.setattr(shutil, "which", lambda name: ffmpeg if name == "ffmpeg" else None)
    paths = viz.animate(result, tmp_path / "anim.gif", dpi=30)
    assert paths == [tmp_path / "anim.gif", tmp_path / "anim.mp4"]
    height, width, _ = viz.render_frame(result, 0, dpi=30).shape
    assert (tmp_path / "anim.mp4").stat().st_size == NUM_FRAMES * height * width * 3


def test_failing_ffmpeg_still_gives_the_gif(result, tmp_path, monkeypatch):
    ffmpeg = fake_ffmpeg(tmp_path, 'cat > /dev/null; echo "no encoder" >&2; exit 1')
    monkeypatch.setattr(shutil, "which", lambda name: ffmpeg)
    paths = viz.animate(result, tmp_path / "anim.gif", dpi=30)
    assert paths == [tmp_path / "anim.gif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anim.gif", "bin"]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_real_ffmpeg_writes_mp4(result, tmp_path):
    paths = viz.animate(result, tmp_path / "anim.gif", dpi=30)
    assert paths[1].read_bytes()[4:8] == b"ftyp"  # an ISO media (MP4) file


def test_save_frames_match_rendered_frames(result, tmp_path):
    paths = viz.save_frames(result, tmp_path, [11, 0], dpi=40)
    assert [p.name for p in paths] == ["frame_00011.png", "frame_00000.png"]
    # Frame 0 was blitted over frame 11's background: it must equal a fresh render of frame 0.
    for path, frame in zip(paths, [11, 0], strict=True):
        with Image.open(path) as image:
            assert image.format == "PNG"
            np.testing.assert_array_equal(
                np.asarray(image.convert("RGB")), viz.render_frame(result, frame, dpi=40)
            )
    with Image.open(paths[0]) as image:
        assert image.size == (round((4 * 3.0 + 0.9) * 40), round(3.3 * 40))  # 4 panels, colorbar
    assert not np.array_equal(
        viz.render_frame(result, 0, dpi=40), viz.render_frame(result, 6, dpi=40)
    )


def test_optional_arrays_may_be_absent(tmp_path, no_ffmpeg):
    result = make_result(optional=False)
    (path,) = viz.animate(result, tmp_path / "anim.gif", dpi=30)
    with Image.open(path) as gif:
        assert gif.n_frames == NUM_FRAMES
    (png,) = viz.save_frames(result, tmp_path, [3], dpi=40)
    with Image.open(png) as image:
        assert image.size == (round((2 * 3.0 + 0.9) * 40), round(3.3 * 40))  # 2D + coarse only


def test_load_result_round_trip_and_errors(result, tmp_path):
    np.savez(tmp_path / "out.npz", **result)
    loaded = viz.load_result(tmp_path / "out.npz")
    assert loaded.keys() == result.keys()
    assert all(array.dtype == np.float32 for array in loaded.values())
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        viz.load_result(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in result.items() if k != "uncertainty"})
    with pytest.raises(
        ValueError, match=r"bad\.npz is missing required key\(s\) \['uncertainty'\]"
    ):
        viz.load_result(tmp_path / "bad.npz")
    (tmp_path / "text.npz").write_text("not an npz")
    with pytest.raises(ValueError, match="not a readable npz"):
        viz.load_result(tmp_path / "text.npz")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "coarse_3d",
            np.zeros((12, 17)),
            r"'coarse_3d'\] has shape \(12, 17\); expected \(T, 17, 3\)",
        ),
        ("keypoints_2d", np.zeros((12, 16, 2)), r"'keypoints_2d'\] has shape \(12, 16, 2\)"),
        (
            "refined_3d",
            np.zeros((11, 17, 3)),
            "'refined_3d'] has 11 frames but keypoints_2d has 12",
        ),
        ("scores", np.zeros(17), r"'scores'\] has shape \(17,\)"),
        ("uncertainty", np.full((12, 17), np.nan), "'uncertainty'] contains non-finite"),
        ("uncertainty", -np.ones((12, 17)), "negative"),
        ("image_size", np.array([1000, 1002, 3]), "'image_size'] must be"),
        ("image_size", np.array([0, 1002]), "'image_size'] must be"),
    ],
)
def test_bad_results_raise_clear_errors(result, tmp_path, key, value, message):
    result[key] = value
    with pytest.raises(ValueError, match=message):
        viz.animate(result, tmp_path / "anim.gif")


def test_bad_arguments_raise(result, tmp_path):
    with pytest.raises(ValueError, match="must end in .gif"):
        viz.animate(result, tmp_path / "anim.mp4")
    with pytest.raises(ValueError, match="stride >= 1"):
        viz.animate(result, tmp_path / "anim.gif", stride=0)
    with pytest.raises(ValueError, match="frame 12 is out of range for a result with 12 frames"):
        viz.save_frames(result, tmp_path, [0, 12])
    assert not list(tmp_path.iterdir())


def test_calibration_bins_against_hand_computed_means():
    sigma = [5.0, 1.0, 3.0, 2.0, 4.0, 6.0]
    error = [50.0, 10.0, 30.0, 20.0, 40.0, 60.0]
    bin_sigma, bin_error = viz.calibration_bins(sigma, error, num_bins=3)
    np.testing.assert_allclose(bin_sigma, [1.5, 3.5, 5.5])  # (1, 2), (3, 4), (5, 6)
    np.testing.assert_allclose(bin_error, [15.0, 35.0, 55.0])
    bin_sigma, bin_error = viz.calibration_bins([3.0, 1.0], [2.0, 4.0], num_bins=10)
    np.testing.assert_allclose(bin_sigma, [1.0, 3.0])  # already binned: kept, sorted by sigma
    np.testing.assert_allclose(bin_error, [4.0, 2.0])
    with pytest.raises(ValueError, match=r"equal shape \(N,\).*\(3,\) and \(2,\)"):
        viz.calibration_bins([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite and non-negative"):
        viz.calibration_bins([1.0, np.nan], [1.0, 2.0])


def test_evaluation_plots(tmp_path):
    tgt = {"Walking": 45.0, "Eating": 50.0, "Average": 47.5}
    refined = {"Walking": 43.0, "Eating": 48.0}  # no summary row: it is recomputed anyway
    path = viz.plot_per_action({"tgt": tgt, "refined": refined}, tmp_path / "p1.png")
    rng = np.random.default_rng(1)
    sigma = rng.uniform(5, 80, 2000)
    error = np.abs(rng.normal(0, sigma))
    calibration = viz.plot_calibration(sigma, error, tmp_path / "cal.png", dpi=50)
    for png in (path, calibration):
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 100
    with pytest.raises(ValueError, match=r"'refined' has no value for action\(s\) \['Sitting'\]"):
        viz.plot_per_action({"tgt": {**tgt, "Sitting": 60.0}, "refined": refined}, path)
    with pytest.raises(ValueError, match="'tgt' action 'Walking' has value 'x'"):
        viz.plot_per_action({"tgt": {"Walking": "x"}}, path)


def evaluation_dict(with_p2=True):
    metrics = {"Walking": (45.0, 35.0), "Eating": (50.0, 38.0), "Sitting": (60.0, 45.0)}
    per_action = {
        method: {
            action: {"p1": p1 - shift, **({"p2": p2 - shift} if with_p2 else {})}
            for action, (p1, p2) in metrics.items()
        }
        for method, shift in (("tgt", 0.0), ("refined", 3.0))
    }
    calibration = {"sigma_mm": [10.0, 20.0, 30.0], "error_mm": [12.0, 18.0, 35.0]}
    return {"per_action": per_action, "calibration": calibration}


def test_plot_evaluation_sections(tmp_path):
    names = [p.name for p in viz.plot_evaluation(evaluation_dict(), tmp_path / "a")]
    assert names == ["per_action_p1.png", "per_action_p2.png", "calibration.png"]
    evaluation = evaluation_dict(with_p2=False)
    del evaluation["calibration"]
    assert [p.name for p in viz.plot_evaluation(evaluation, tmp_path / "b")] == [
        "per_action_p1.png"
    ]
    with pytest.raises(ValueError, match="no 'per_action' or 'calibration'"):
        viz.plot_evaluation({"p1": 3.0}, tmp_path)
    evaluation["per_action"]["tgt"]["Walking"] = {"p2": 30.0}
    with pytest.raises(ValueError, match="needs a 'p1'"):
        viz.plot_evaluation(evaluation, tmp_path)
    with pytest.raises(ValueError, match="'sigma_mm' and 'error_mm'"):
        viz.plot_evaluation({"calibration": {"sigma_mm": [1.0]}}, tmp_path)


def evaluator_tables():
    """Tables as gentg_jax.evaluation writes them: metric -> metrics.ProtocolTable.as_dict()."""
    from gentg_jax import metrics

    frames = {"Walking 1": [0.040, 0.044], "Eating": [0.050], "Sitting 2": [0.061, 0.059]}
    tables = {}
    for metric, scale in (("P1", 1.0), ("P2", 0.8)):
        errors = {("S9", action, "54138969"): scale * np.array(v) for action, v in frames.items()}
        tables[metric] = metrics.protocol_table(errors).as_dict()
    return tables


def test_per_action_from_evaluator_tables():
    per_action = viz.per_action_from_tables(json.loads(json.dumps(evaluator_tables())))
    assert sorted(per_action) == ["Eating", "Sitting", "Walking"]
    np.testing.assert_allclose(per_action["Walking"]["p1"], 42.0)  # mean of 40 and 44 mm
    np.testing.assert_allclose(per_action["Sitting"]["p2"], 0.8 * 60.0)
    with pytest.raises(ValueError, match="'P1' table"):
        viz.per_action_from_tables({"P2": {"actions": {}}})


def test_cli_end_to_end(result, tmp_path):
    np.savez(tmp_path / "out.npz", **result)
    (tmp_path / "eval.json").write_text(json.dumps(evaluation_dict()))
    run_eval = tmp_path / "runs" / "e2e" / "eval" / "step_00000010.json"
    run_eval.parent.mkdir(parents=True)
    run_eval.write_text(json.dumps({"step": 10, "tables": evaluator_tables()}))
    out = tmp_path / "viz"
    command = [sys.executable, "-m", "experiments.visualize", f"--npz={tmp_path / 'out.npz'}"]
    command += [f"--out={out}", "--frames=0,5", f"--eval_json={tmp_path / 'eval.json'},{run_eval}"]
    command += ["--max_frames=6", "--dpi=30"]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no ffmpeg: GIF only
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    expected = ["animation.gif", "calibration.png", "frame_00000.png", "frame_00005.png"]
    expected += ["per_action_p1.png", "per_action_p2.png"]
    assert sorted(p.name for p in out.iterdir()) == expected
    with Image.open(out / "animation.gif") as gif:
        assert gif.n_frames == 6


def run_main(argv):
    from experiments import visualize

    with flagsaver.flagsaver():
        flags.FLAGS(["visualize", *argv])
        visualize.main(["visualize"])


def test_cli_usage_errors(tmp_path):
    with pytest.raises(app.UsageError, match="--npz, --eval_json or both"):
        run_main([f"--out={tmp_path}"])
    with pytest.raises(app.UsageError, match="comma-separated integers"):
        run_main([f"--out={tmp_path}", "--npz=x.npz", "--frames=0,a"])
    with pytest.raises(FileNotFoundError, match="no evaluation JSON"):
        run_main([f"--out={tmp_path}", f"--eval_json={tmp_path / 'no.json'}"])
    with pytest.raises(FileNotFoundError, match="no result file"):
        run_main([f"--out={tmp_path}", f"--npz={tmp_path / 'no.npz'}"])
    (tmp_path / "a.json").write_text(json.dumps(evaluation_dict()))
    with pytest.raises(ValueError, match="method 'tgt' is in more than one --eval_json file"):
        run_main([f"--out={tmp_path}", f"--eval_json={tmp_path / 'a.json'},{tmp_path / 'a.json'}"])
    (tmp_path / "b.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="b.json has none of 'per_action'"):
        run_main([f"--out={tmp_path}", f"--eval_json={tmp_path / 'b.json'}"])
