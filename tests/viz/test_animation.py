"""Animations and stills of an inference result (gentg_jax.viz.animation, scene)."""

import shutil

import numpy as np
import pytest
from PIL import Image

from gentg_jax import viz
from tests import helpers

ROOT = helpers.REPO
NUM_FRAMES = 12  # frames of helpers.make_result()

# A person standing 4.5 m in front of the camera, facing it, in the camera frame (y down): hips
# at the origin, feet at y = +0.88 m, head at y = -0.7 m.


def fake_ffmpeg(tmp_path, body):
    """An executable named ffmpeg whose script gets the output path (the last argument) as $out."""
    script = tmp_path / "bin" / "ffmpeg"
    script.parent.mkdir()
    script.write_text(f"#!/bin/sh\nfor out; do :; done\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_camera_to_plot_is_a_rotation_that_stands_the_person_up():
    plot = viz.camera_to_plot(helpers.STANDING)
    head, ankles = plot[10], plot[[3, 6]]
    assert np.all(head[2] > ankles[:, 2] + 1.5)  # up is +z in the plot
    basis = viz.camera_to_plot(np.eye(3))
    np.testing.assert_allclose(np.linalg.det(basis), 1.0)  # not mirrored
    np.testing.assert_allclose(plot[:, 0], helpers.STANDING[:, 0])  # the camera's right stays right


def test_animate_writes_gif_with_every_frame(result, tmp_path, no_ffmpeg):
    paths = viz.animate(result, tmp_path / "out" / "anim.gif", fps=20)
    assert paths == [tmp_path / "out" / "anim.gif"]
    with Image.open(paths[0]) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == NUM_FRAMES
        assert gif.info["duration"] == 50
        assert gif.size == viz.render_frame(result, 0, dpi=100).shape[1::-1]
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
    result = helpers.make_result(optional=False)
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
