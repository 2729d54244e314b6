"""Human3.6M facts: the camera calibration against the published one, in library units."""

import json

import numpy as np
import pytest

from gentg_jax.data import h36m
from tests import helpers


@pytest.fixture(scope="module")
def published():
    return json.loads((helpers.TESTDATA / "h36m_cameras.json").read_text())


def test_constants_match_published_calibration(published):
    assert h36m.CAMERA_IDS == tuple(c["id"] for c in published["intrinsics"])
    for ours, theirs in zip(h36m.INTRINSICS, published["intrinsics"], strict=True):
        assert ours.id == theirs["id"]
        assert list(ours.center) == theirs["center"]
        assert list(ours.focal_length) == theirs["focal_length"]
        assert list(ours.radial_distortion) == theirs["radial_distortion"]
        assert list(ours.tangential_distortion) == theirs["tangential_distortion"]
        assert (ours.res_w, ours.res_h) == (theirs["res_w"], theirs["res_h"])
    assert sorted(h36m.EXTRINSICS) == sorted(published["extrinsics"])
    assert set(h36m.TRAIN_SUBJECTS) | set(h36m.TEST_SUBJECTS) == set(published["extrinsics"])
    for subject, cameras in published["extrinsics"].items():
        for ours, theirs in zip(h36m.EXTRINSICS[subject], cameras, strict=True):
            assert list(ours.orientation) == theirs["orientation"]
            assert list(ours.translation_mm) == theirs["translation"]
    # Spot checks written out from the published table.
    assert h36m.INTRINSICS[1].focal_length[0] == 1149.6756591796875
    assert h36m.EXTRINSICS["S11"][3].translation_mm[2] == 1578.017578125


def test_camera_in_library_units(published):
    cam = h36m.camera("S9", 2)
    intr = published["intrinsics"][2]
    w, h = intr["res_w"], intr["res_h"]
    assert cam.id == "58860488" and cam.image_size == (w, h)
    expected = [
        intr["focal_length"][0] / w * 2,
        intr["focal_length"][1] / w * 2,
        intr["center"][0] / w * 2 - 1,
        intr["center"][1] / w * 2 - h / w,
        *intr["radial_distortion"],
        *intr["tangential_distortion"],
    ]
    assert cam.intrinsic.dtype == np.float32
    np.testing.assert_allclose(cam.intrinsic, expected, rtol=1e-6)
    translation = np.asarray(published["extrinsics"]["S9"][2]["translation"]) / 1000
    np.testing.assert_allclose(cam.translation, translation, rtol=1e-6)
    with pytest.raises(KeyError, match="S2"):
        h36m.camera("S2", 0)
    with pytest.raises(IndexError):
        h36m.camera("S1", 4)
