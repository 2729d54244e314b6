"""benchmarks/real_motion.py without training: the CPU-budget arithmetic, the table, and which
runs it orders (training and evaluation replaced by recorders)."""

import argparse

import numpy as np
import pytest

from benchmarks import real_motion


def test_calibration_is_the_line_through_two_runs():
    calibration = real_motion.fit_calibration((20, 30.0), (80, 60.0))
    assert calibration.per_step == pytest.approx(0.5) and calibration.fixed == pytest.approx(20.0)
    assert calibration.steps_for(420.0) == 800
    assert calibration.steps_for(5.0) == 1  # a budget below the fixed cost still trains a step
    with pytest.raises(ValueError, match="different step counts"):
        real_motion.fit_calibration((80, 1.0), (20, 2.0))


def test_table_is_mean_and_sample_std_over_seeds_in_table_units():
    runs = [
        {"variant": "default", "seed": s, "tgt_steps": 10, "summary": {"p1": 80.0 + 2 * s}}
        for s in (0, 1)
    ]
    runs[0]["summary"]["resampled_fraction"] = runs[1]["summary"]["resampled_fraction"] = 0.25
    table = real_motion.aggregate(runs)
    assert table["default"]["p1"] == (81.0, pytest.approx(np.sqrt(2.0)))
    assert table["default"]["resampled_fraction"] == (25.0, 0.0)  # a fraction shown in percent
    text = real_motion.format_table(table)
    assert text.splitlines()[0] == "| variant | tgt_steps | P1 | resampled % |"
    assert "| default | 10 +- 0 | 81 +- 1.4 | 25 +- 0 |" in text


def _args(tmp_path, **overrides) -> argparse.Namespace:
    args = dict(
        dataset="mocap_h36m/all_detector",
        data_dir=str(tmp_path / "data"),
        workdir=str(tmp_path / "runs"),
        tgt_set=["train.batch_size=8"],
        gpc_set=[],
        seeds="0,1",
        ablation="",
        tgt_cpu=410.0,
        gpc_cpu=0.0,
        jobs=1,
        variant=[],
        tgt_steps=0,
    )
    return argparse.Namespace(**(args | overrides))


@pytest.fixture
def recorded(monkeypatch):
    """Bench.train/evaluate replaced: every run costs 10 + 0.5 CPU s per step."""
    calls = []

    def train(self, kind, workdir, seed, steps, extra):
        shared = self.tgt_set if kind == "tgt" else self.gpc_set
        calls.append((kind, workdir.name, seed, steps, shared + list(extra)))
        return 10.0 + 0.5 * steps

    def evaluate(self, workdir):
        return {"p1": 80.0, "p2": 60.0, "sigma_error_corr": 0.5}

    monkeypatch.setattr(real_motion.Bench, "train", train)
    monkeypatch.setattr(real_motion.Bench, "evaluate", evaluate)
    return calls


def test_tgt_only_ablation_gives_every_variant_the_same_budget(tmp_path, recorded):
    result = real_motion.run(_args(tmp_path, ablation="limb_tokens,temporal_limbs"))
    assert all(kind == "tgt" for kind, *_ in recorded)  # --gpc_cpu 0: no corrector
    trained = [call for call in recorded if call[1].startswith("tgt_") and call[3] > 80]
    assert len(trained) == 6 and {call[3] for call in trained} == {800}  # (410 - 10) / 0.5
    sets = {(name, seed): extra for _, name, seed, _, extra in trained}
    limbs = ["train.batch_size=8", "model.use_limb_tokens=True"]
    assert sets["tgt_temporal_limbs", 1] == [*limbs, "model.limb_temporal=True"]
    assert sets["tgt_limb_tokens", 0] == limbs
    assert list(result["table"]) == ["default", "limb_tokens", "temporal_limbs"]
    assert result["table"]["default"]["coarse_p1"] == result["table"]["default"]["p1"]


def test_default_with_a_corrector_trains_the_gpc_on_its_own_tgt(tmp_path, recorded):
    result = real_motion.run(_args(tmp_path, seeds="0", gpc_cpu=110.0))
    gpc_runs = [call for call in recorded if call[0] == "gpc"]
    assert [call[3] for call in gpc_runs] == [20, 80, 200]  # calibration, then (110 - 10) / 0.5
    tgt_dir = tmp_path / "runs" / "seed0" / "tgt_default"
    assert f"tgt_workdir={tgt_dir}" in gpc_runs[-1][4]
    assert result["runs"][0]["gpc_steps"] == 200


def test_corrector_variants_reuse_the_default_tgt_and_split_the_budget(tmp_path, recorded):
    result = real_motion.run(_args(tmp_path, seeds="0", gpc_cpu=110.0, ablation="e2e,longer_gpc"))
    trained = [call for call in recorded if "calibration" not in str(call[1])]
    assert [call[1] for call in recorded if call[0] == "tgt" and call[3] > 80] == ["tgt_default"]
    steps = {name: steps for _, name, _, steps, _ in recorded if not name.endswith(("_20", "_80"))}
    # (110 - 10) / 0.5 for the default GPC; half the budget twice for e2e; 3x for longer_gpc
    assert steps["gpc"] == 200 and steps["gpc_half"] == 90 and steps["e2e"] == 90
    assert steps["gpc_longer"] == (3 * 110 - 10) / 0.5
    runs = {call[1]: call for call in trained}
    tgt_dir = tmp_path / "runs" / "seed0" / "tgt_default"
    assert f"tgt_workdir={tgt_dir}" in runs["gpc_half"][4]
    assert f"tgt_workdir={tgt_dir}" in runs["gpc_longer"][4]
    assert runs["e2e"][4] == [f"gpc_workdir={tmp_path / 'runs' / 'seed0' / 'gpc_half'}"]
    calibration_e2e = [call for call in recorded if call[0] == "e2e" and call[3] in (20, 80)]
    assert [call[4] for call in calibration_e2e] == [
        [f"gpc_workdir={tmp_path / 'runs' / 'calibration' / 'gpc_80'}"]
    ] * 2
    e2e = next(r for r in result["runs"] if r["variant"] == "e2e")
    assert e2e["tgt_steps"] == result["runs"][0]["tgt_steps"] and e2e["e2e_steps"] == 90
    assert list(result["table"]) == ["default", "e2e", "longer_gpc"]
    assert result["table"]["e2e"]["e2e_steps"] == (90.0, 0.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ablation": "longer_tgt"}, "needs a corrector"),
        ({"ablation": "e2e"}, "needs a corrector"),
        ({"variant": ["beta0"]}, "is not NAME:KEY=VALUE"),
        ({"variant": ["limb_tokens:model.dim=8"], "ablation": "limb_tokens"}, "already a variant"),
        ({"ablation": "no_limbs"}, "unknown --ablation"),
        ({"tgt_steps": 100, "gpc_cpu": 110.0}, "--tgt_steps is for TGT levers alone"),
        ({"tgt_steps": 100, "ablation": "limb_tokens"}, "--tgt_steps is for TGT levers alone"),
    ],
)
def test_bad_ablations_are_refused_before_any_run(tmp_path, recorded, overrides, message):
    with pytest.raises(SystemExit, match=message):
        real_motion.run(_args(tmp_path, **overrides))
    assert recorded == []


def test_own_variants_are_tgt_runs_beside_the_default(tmp_path, recorded):
    variant = ["wide:model.dim=96", "wide:model.num_heads=8", "beta0:loss.uncertainty_beta=0.0"]
    result = real_motion.run(_args(tmp_path, seeds="0", variant=variant))
    trained = {name: extra for _, name, _, steps, extra in recorded if steps > 80}
    assert trained["tgt_wide"] == ["train.batch_size=8", "model.dim=96", "model.num_heads=8"]
    assert trained["tgt_beta0"] == ["train.batch_size=8", "loss.uncertainty_beta=0.0"]
    assert list(result["table"]) == ["default", "wide", "beta0"]


def test_fixed_tgt_steps_skip_the_calibration(tmp_path, recorded):
    variant = ["detached:model.sigma_stop_gradient=True"]
    result = real_motion.run(_args(tmp_path, variant=variant, tgt_steps=300))
    assert [(name, seed, steps) for _, name, seed, steps, _ in recorded] == [
        ("tgt_default", 0, 300),
        ("tgt_detached", 0, 300),
        ("tgt_default", 1, 300),
        ("tgt_detached", 1, 300),
    ]
    assert result["table"]["detached"]["tgt_cpu_s"] == (160.0, 0.0)  # still recorded


def test_longer_tgt_is_the_default_calibration_given_the_gpc_budget_too(tmp_path, recorded):
    result = real_motion.run(_args(tmp_path, seeds="0", gpc_cpu=110.0, ablation="longer_tgt"))
    calibrated = {name for _, name, _, steps, _ in recorded if steps in (20, 80)}
    assert not any("longer" in name for name in calibrated)  # no calibration of its own
    longer = next(r for r in result["runs"] if r["variant"] == "longer_tgt")
    assert longer["tgt_steps"] == (410 + 110 - 10) / 0.5
    assert result["runs"][0]["tgt_steps"] == (410 - 10) / 0.5
