"""Fixtures of the viz tests: a result to draw, and no ffmpeg on PATH."""

import shutil

import pytest

from tests import helpers


@pytest.fixture(name="result")
def fixture_result():
    return helpers.make_result()


@pytest.fixture(name="no_ffmpeg")
def fixture_no_ffmpeg(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
