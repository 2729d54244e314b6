"""Dataset pictures (gentg_jax.viz.dataset) of synthetic examples."""

import pytest
from PIL import Image

from gentg_jax import viz
from gentg_jax.data import checks, synthetic


def test_example_and_data_check_plots(tmp_path):
    config = synthetic.SyntheticConfig(
        subjects=("S1",), actions=("Walking", "Sitting"), frames_per_sequence=20
    )
    examples = [example for _, example in synthetic.generate_examples(config)]
    paths = [
        viz.plot_example(examples[0], 5, tmp_path / "example.png"),
        viz.plot_data_checks(checks.summarize(examples), tmp_path / "checks.png"),
    ]
    for png in paths:
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 300
    with pytest.raises(ValueError, match="frame 20 is out of range"):
        viz.plot_example(examples[0], 20, tmp_path / "x.png")
