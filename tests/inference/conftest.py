"""Fixtures of the inference tests: a tiny TGT workdir and its Predictor."""

import pytest

from gentg_jax import inference
from tests.inference import common


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("inference")


@pytest.fixture(scope="module")
def raw_params():
    return common.tgt_params(common.tgt_config())


@pytest.fixture(scope="module")
def tgt_workdir(root, raw_params):
    common.save_checkpoint(root / "tgt", common.tgt_config(), raw_params)
    return root / "tgt"


@pytest.fixture(scope="module")
def predictor(tgt_workdir):
    return inference.load_predictor(tgt_workdir)
