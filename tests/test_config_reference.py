"""The README's config reference is generated from the configs and must match them."""

import re

import pytest

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
