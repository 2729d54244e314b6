"""The README's config reference is generated from the configs and must match them; defaults
that one config file takes from another."""

import re

import pytest

from configs import e2e_finetune, tgt_base
from experiments import config_reference
from tests import helpers

README = helpers.REPO / "README.md"


def test_readme_config_reference_matches_the_configs():
    readme = README.read_text()
    assert config_reference.replace_section(readme, config_reference.reference()) == readme


def test_every_default_field_is_listed_with_its_default():
    table = config_reference.reference_table(config_reference.tgt_base)
    config = config_reference.tgt_base.get_config()
    assert f"| `train.learning_rate` | `{config.train.learning_rate!r}` |" in table
    assert len(config_reference.flatten(config)) == table.count("\n| `")
    # A '|' in a meaning is escaped, so it does not end the cell.
    gpc_table = config_reference.reference_table(config_reference.gpc_base)
    selection = next(row for row in gpc_table.splitlines() if "`refine.selection`" in row)
    assert len(re.findall(r"(?<!\\)\|", selection)) == 4  # the cells' borders only
    assert '\\| "top_fraction"' in selection


def test_a_field_without_a_comment_is_an_error():
    comments = config_reference.field_comments("config.a.b = 1  # meaning\nconfig.a.c = 2\n")
    assert comments == {"a.b": "meaning"}
    with pytest.raises(ValueError, match="no config reference markers"):
        config_reference.replace_section("no markers", "body")


def test_sigma_head_rate_is_each_tgt_variants_peak_rate_and_off_in_fine_tuning():
    # The TGT's detached sigma head keeps its variant's peak rate; end-to-end fine-tuning keeps
    # the head on the fine-tuning schedule (the GPC's: tests/models/test_gpc.py).
    for variant in ("tiny", "base", "large"):
        train = tgt_base.get_config(variant).train
        assert train.sigma_learning_rate == train.learning_rate > 0
    for variant in ("tiny", "base"):
        assert e2e_finetune.get_config(variant).train.sigma_learning_rate == 0.0
    assert tgt_base.get_config("tiny").train.sigma_learning_rate == 2e-3
    assert tgt_base.get_config("base").train.sigma_learning_rate == 4e-4
