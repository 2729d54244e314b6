"""Accuracy at a fixed CPU-time budget: TGT and GPC on a dataset, several seeds, mean and spread.

  python -m benchmarks.real_motion --data_dir /data/mocap_tfds --dataset mocap_h36m/all_detector \
      --tgt_cpu 900 --gpc_cpu 450 --seeds 0,1,2 [--ablation [NAMES]] [--workdir runs/real_motion]
  python -m benchmarks.real_motion --dataset synthetic_h36m --data_dir runs/quickstart/data ...

Every run is a training command as a user runs it (`experiments.train_tgt` / `train_gpc` in a
subprocess; `--jobs 2` trains two seeds side by side) and is given CPU seconds, not steps: a
calibration pair of short runs per model variant measures the CPU cost of a step and the fixed
cost (start, compile, checkpoint), and the run gets `(budget - fixed) / per_step` steps, so its
learning-rate schedule completes; the CPU seconds (user + system of the subprocess) and steps
actually used are recorded. Evaluation
(`experiments.evaluate`, the whole test split) is not counted in the budget.

Variants (tiny configs):
  default      TGT (17 joint tokens, graph bias) for --tgt_cpu, then the GPC on it for --gpc_cpu
  --ablation adds (all of them, or those named: --ablation limb_tokens,longer_tgt), each a TGT
  alone for --tgt_cpu (evaluated without a corrector):
  limb_tokens  config.model.use_limb_tokens=True (16 limb tokens, spatial attention only)
  temporal_limbs  limb tokens in the temporal attention too (model.limb_temporal=True)
  limbs_on_joints  limb features added to the joint tokens (model.limbs_on_joints=True)
  no_graph     config.model.use_graph_bias=False
  longer_tgt   the default TGT given --tgt_cpu + --gpc_cpu (is the corrector worth its compute?)
Two corrector variants start from the default TGT of the same seed (its run is not repeated):
  e2e          a GPC for half of --gpc_cpu, then end-to-end fine-tuning of the TGT and that GPC
               together (experiments.finetune_e2e) for the other half: the same total CPU
  longer_gpc   the GPC given 3x --gpc_cpu (does the corrector's gain come with budget?)
--gpc_cpu 0 trains no corrector: every variant, the default too, is a TGT alone (a TGT-only
ablation in a third less time; longer_tgt then has nothing to compare and is refused).

`--tgt_set` / `--gpc_set` (repeatable KEY=VALUE config overrides) apply to every run.
`--variant NAME:KEY=VALUE` (repeatable; a NAME again adds a key) adds a TGT variant of your own,
trained and evaluated alone like the ablations, so a training lever is measured against the
default in one run (`--variant nll_beta0:loss.uncertainty_beta=0.0`). `--tgt_steps N` gives every
TGT variant N steps instead (no calibration; --gpc_cpu 0, no --ablation): for a lever that does
not change what a step costs, equal steps remove the calibration's noise (the CPU seconds are
still recorded). Prints one table (mean +- std over seeds) and writes everything (per run: steps,
CPU s, summary) to --json.

Refinement levers need no training: `--sweep GPC_WORKDIR --refine "start_factor=0.5" --refine
"selection='window_fraction',top_fraction=0.2"` evaluates one trained GPC under each setting of
config.refine (the empty setting: as saved) and prints one row per setting.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import dataclasses
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys

from gentg_jax import files
from gentg_jax.profiling import machine

ROOT = pathlib.Path(__file__).resolve().parents[1]
ABLATIONS = {
    "limb_tokens": ["model.use_limb_tokens=True"],
    "temporal_limbs": ["model.use_limb_tokens=True", "model.limb_temporal=True"],
    "limbs_on_joints": ["model.limbs_on_joints=True"],
    "no_graph": ["model.use_graph_bias=False"],
    "longer_tgt": [],
    "e2e": [],
    "longer_gpc": [],
}
# Variants that reuse the default TGT run and differ in the corrector.
CORRECTOR_VARIANTS = ("e2e", "longer_gpc")
# Variants with the default TGT's calibration (no run of their own); all of them need a corrector.
ON_DEFAULT_TGT = ("longer_tgt", *CORRECTOR_VARIANTS)
LONGER_GPC_FACTOR = 3.0
CONFIGS = {
    "tgt": "configs/tgt_base.py:tiny",
    "gpc": "configs/gpc_base.py:tiny",
    "e2e": "configs/e2e_finetune.py:tiny",
}
COMMANDS = {"tgt": "train_tgt", "gpc": "train_gpc", "e2e": "finetune_e2e"}
# Summary key -> (table column, scale). Errors are in mm already; fractions become percent.
COLUMNS = {
    "coarse_p1": ("TGT P1", 1.0),
    "coarse_p2": ("TGT P2", 1.0),
    "p1": ("P1", 1.0),
    "p2": ("P2", 1.0),
    "resampled_fraction": ("resampled %", 100.0),
    "resampled_error_before": ("resampled before", 1.0),
    "resampled_error_after": ("resampled after", 1.0),
    "kept_error_before": ("kept before", 1.0),
    "kept_error_after": ("kept after", 1.0),
    "sigma_error_corr": ("sigma-err corr", 1.0),
    "sigma_error_slope": ("sigma slope", 1.0),
    "sigma_corr_ceiling": ("corr ceiling", 1.0),
}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """CPU seconds of a training run with n steps: fixed + per_step * n."""

    fixed: float
    per_step: float

    def steps_for(self, budget: float) -> int:
        return max(1, int((budget - self.fixed) / self.per_step))


def fit_calibration(short: tuple[int, float], long: tuple[int, float]) -> Calibration:
    """The line through two (steps, CPU seconds) runs; the per-step cost is kept positive."""
    (n1, c1), (n2, c2) = short, long
    if n2 <= n1:
        raise ValueError(f"calibration runs need different step counts, got {n1} and {n2}")
    per_step = max((c2 - c1) / (n2 - n1), 1e-6)
    return Calibration(fixed=max(c1 - per_step * n1, 0.0), per_step=per_step)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_command(args: list[str], log: pathlib.Path) -> float:
    """Runs `python -m ...` in a subprocess (output to `log`); returns its CPU seconds (its own
    user + system time, so runs may go on side by side)."""
    with open(log, "a") as f:
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=f, stderr=f)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed ({process.returncode}); see {log}")
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass
class Bench:
    """The settings every run shares."""

    dataset: str
    data_dir: str
    workdir: pathlib.Path
    tgt_set: list[str]
    gpc_set: list[str]

    def _flags(self, seed: int, steps: int, extra: list[str]) -> list[str]:
        sets = [
            f"data.name={self.dataset}",
            f"data.data_dir={self.data_dir}",
            f"seed={seed}",
            f"train.num_steps={steps}",
            "train.eval_every=0",
            f"train.checkpoint_every={steps}",
            f"train.log_every={max(1, steps // 5)}",
            "train.parallel=single",
            *extra,
        ]
        return [f"--config.{item}" for item in sets]

    def train(self, kind: str, workdir: pathlib.Path, seed: int, steps: int, extra: list[str]):
        """CPU seconds of one training run from scratch in `workdir` (kind: tgt, gpc or e2e;
        --tgt_set / --gpc_set apply to the first two)."""
        if workdir.exists():
            raise FileExistsError(f"{workdir} exists: choose a new --workdir")
        shared = {"tgt": self.tgt_set, "gpc": self.gpc_set}.get(kind, [])
        sets = shared + extra
        command = [
            f"experiments.{COMMANDS[kind]}",
            f"--config={CONFIGS[kind]}",
            f"--workdir={workdir}",
        ]
        workdir.parent.mkdir(parents=True, exist_ok=True)
        return run_command(command + self._flags(seed, steps, sets), workdir.with_suffix(".log"))

    def evaluate(self, workdir: pathlib.Path) -> dict[str, float]:
        """The summary of `experiments.evaluate` on the workdir's final checkpoint."""
        run_command(
            ["experiments.evaluate", f"--workdir={workdir}", "--checkpoint=latest"],
            workdir.with_suffix(".log"),
        )
        return json.loads((workdir / "eval" / "eval.json").read_text())["summary"]

    def calibrate(self, kind: str, name: str, extra: list[str]) -> Calibration:
        """Two short runs (20 and 80 steps) of a model variant."""
        points = []
        for steps in (20, 80):
            workdir = self.calibration_dir(name, steps)
            points.append((steps, self.train(kind, workdir, 0, steps, extra)))
        return fit_calibration(*points)

    def calibration_dir(self, name: str, steps: int) -> pathlib.Path:
        return self.workdir / "calibration" / f"{name}_{steps}"


def _gpc_sets(tgt_workdir: pathlib.Path | str) -> list[str]:
    return [f"tgt_workdir={tgt_workdir}", "train_from_gt_noise=False"]


def _e2e_sets(gpc_workdir: pathlib.Path | str) -> list[str]:
    return [f"gpc_workdir={gpc_workdir}"]


def run(args: argparse.Namespace) -> dict:
    bench = Bench(
        args.dataset, args.data_dir, pathlib.Path(args.workdir), args.tgt_set, args.gpc_set
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = (
        ABLATIONS if args.ablation == "all" else args.ablation.split(",") if args.ablation else []
    )
    if unknown := sorted(set(chosen) - set(ABLATIONS)):
        raise SystemExit(
            f"real_motion: unknown --ablation {unknown}; choose from {list(ABLATIONS)}"
        )
    refine = args.gpc_cpu > 0
    if not refine and (needing := [n for n in chosen if n in ON_DEFAULT_TGT]):
        raise SystemExit(f"real_motion: --ablation {needing} needs a corrector (--gpc_cpu > 0)")
    if args.tgt_steps and (refine or chosen):
        raise SystemExit(
            "real_motion: --tgt_steps is for TGT levers alone: no --ablation, --gpc_cpu 0"
        )
    variants = {"default": []} | {name: ABLATIONS[name] for name in chosen}
    for name, sets in parse_variants(args.variant).items():
        if name in variants:
            raise SystemExit(f"real_motion: --variant {name} is already a variant")
        variants[name] = sets
    calibration = {
        name: bench.calibrate("tgt", f"tgt_{name}", sets)
        for name, sets in variants.items()
        if name not in ON_DEFAULT_TGT and not args.tgt_steps
    }
    if refine:  # the GPC's calibration conditions it on the default TGT's longer calibration run
        tgt_default = bench.calibration_dir("tgt_default", 80)
        calibration["gpc"] = bench.calibrate("gpc", "gpc", _gpc_sets(tgt_default))
    if "e2e" in variants:
        calibration["e2e"] = bench.calibrate(
            "e2e", "e2e", _e2e_sets(bench.calibration_dir("gpc", 80))
        )

    def run_dir(seed: int, name: str) -> pathlib.Path:
        return bench.workdir / f"seed{seed}" / name

    def train_gpc(record: dict, seed: int, tgt_dir: pathlib.Path, name: str, budget: float):
        """Trains a GPC on `tgt_dir` for `budget` CPU s; records its steps and CPU s."""
        gpc_dir = run_dir(seed, name)
        steps = calibration["gpc"].steps_for(budget)
        record.update(
            gpc_steps=steps, gpc_cpu_s=bench.train("gpc", gpc_dir, seed, steps, _gpc_sets(tgt_dir))
        )
        return gpc_dir

    def corrector_run(name: str, seed: int, default: dict) -> dict:
        """A corrector variant on the default TGT of this seed (its steps and CPU s copied)."""
        tgt_dir = run_dir(seed, "tgt_default")
        record = {"variant": name, "seed": seed}
        record.update({k: default[k] for k in ("tgt_steps", "tgt_cpu_s")})
        if name == "longer_gpc":
            gpc_dir = train_gpc(
                record, seed, tgt_dir, "gpc_longer", LONGER_GPC_FACTOR * args.gpc_cpu
            )
            record["summary"] = bench.evaluate(gpc_dir)
            return record
        gpc_dir = train_gpc(record, seed, tgt_dir, "gpc_half", args.gpc_cpu / 2)
        e2e_dir = run_dir(seed, "e2e")
        steps = calibration["e2e"].steps_for(args.gpc_cpu / 2)
        record.update(
            e2e_steps=steps, e2e_cpu_s=bench.train("e2e", e2e_dir, seed, steps, _e2e_sets(gpc_dir))
        )
        record["summary"] = bench.evaluate(e2e_dir)
        return record

    def tgt_run(name: str, sets: list[str], seed: int) -> dict:
        """A TGT variant of its own (the default with its GPC when refining)."""
        longer = name == "longer_tgt"  # the default TGT, its calibration, a longer budget
        budget = args.tgt_cpu + (args.gpc_cpu if longer else 0.0)
        steps = args.tgt_steps or calibration["default" if longer else name].steps_for(budget)
        tgt_dir = run_dir(seed, f"tgt_{name}")
        cpu = bench.train("tgt", tgt_dir, seed, steps, sets)
        record = {"variant": name, "seed": seed, "tgt_steps": steps, "tgt_cpu_s": cpu}
        if name == "default" and refine:
            record["summary"] = bench.evaluate(
                train_gpc(record, seed, tgt_dir, "gpc", args.gpc_cpu)
            )
        else:
            summary = bench.evaluate(tgt_dir)
            record["summary"] = summary | {"coarse_p1": summary["p1"], "coarse_p2": summary["p2"]}
        return record

    def seed_runs(seed: int) -> list[dict]:
        runs = []  # the default first: the corrector variants reuse its TGT
        for name, sets in variants.items():
            if name in CORRECTOR_VARIANTS:
                runs.append(corrector_run(name, seed, runs[0]))
            else:
                runs.append(tgt_run(name, sets, seed))
            print(f"seed {seed} {name}: {json.dumps(runs[-1])}", flush=True)
        return runs

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = [record for records in pool.map(seed_runs, seeds) for record in records]
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine.cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "dataset": args.dataset,
        "budgets_cpu_s": {"tgt": args.tgt_cpu, "gpc": args.gpc_cpu},
        "overrides": {"tgt": args.tgt_set, "gpc": args.gpc_set},
        "calibration": {k: dataclasses.asdict(v) for k, v in calibration.items()},
        "runs": runs,
        "table": aggregate(runs),
    }


def aggregate(runs: list[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """variant -> column -> (mean, std) over seeds, for the summary keys every run has."""
    table = {}
    for name in dict.fromkeys(r["variant"] for r in runs):
        chosen = [r for r in runs if r["variant"] == name]
        row = {}
        for key in ("tgt_steps", "tgt_cpu_s", "gpc_steps", "gpc_cpu_s", "e2e_steps", "e2e_cpu_s"):
            if all(key in r for r in chosen):
                row[key] = mean_std([float(r[key]) for r in chosen])
        for key, (_, scale) in COLUMNS.items():
            if all(key in r["summary"] for r in chosen):
                row[key] = mean_std([scale * r["summary"][key] for r in chosen])
        table[name] = row
    return table


def format_table(table: dict[str, dict[str, tuple[float, float]]]) -> str:
    """Markdown, one row per variant, cells 'mean +- std'."""
    keys = list(dict.fromkeys(k for row in table.values() for k in row))
    names = [COLUMNS.get(k, (k, 1.0))[0] for k in keys]
    lines = ["| variant | " + " | ".join(names) + " |", "|---" * (len(keys) + 1) + "|"]
    for variant, row in table.items():
        cells = [f"{row[k][0]:.3g} +- {row[k][1]:.2g}" if k in row else "" for k in keys]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_variants(specs: list[str]) -> dict[str, list[str]]:
    """['beta0:loss.uncertainty_beta=0.0', ...] -> {'beta0': ['loss.uncertainty_beta=0.0']}; a
    name given again adds its override to the same variant."""
    variants: dict[str, list[str]] = {}
    for spec in specs:
        name, _, setting = spec.partition(":")
        if not name or "=" not in setting:
            raise SystemExit(f"real_motion: --variant {spec!r} is not NAME:KEY=VALUE")
        variants.setdefault(name, []).append(setting)
    return variants


def parse_settings(text: str) -> dict[str, object]:
    """'a=1,b=\'x\'' -> {'a': 1, 'b': 'x'} (values are Python literals; bare words are text)."""
    settings = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            settings[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            settings[key.strip()] = value.strip()
    return settings


def sweep(workdir: str, settings: list[str]) -> dict:
    """Evaluates a trained GPC workdir under each refine setting; rows of summaries."""
    from gentg_jax import checkpoint
    from gentg_jax.train import loop

    rows = {}
    for text in settings:
        config = checkpoint.load_config(workdir)
        config.refine.update(parse_settings(text))
        result, _ = loop.evaluate_checkpoint(workdir, step="latest", config=config)
        rows[text or "saved"] = {"summary": result.summary}
        print(f"{text or 'saved'}: {json.dumps(result.summary)}", flush=True)
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "workdir": workdir,
        "runs": [{"variant": k, **v} for k, v in rows.items()],
        "table": aggregate([{"variant": k, **v} for k, v in rows.items()]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="", help="e.g. mocap_h36m/all_detector")
    parser.add_argument("--data_dir", default="", help="TFDS data_dir holding the dataset")
    parser.add_argument("--workdir", default="runs/real_motion", help="a new directory")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tgt_cpu", type=float, default=900.0, help="TGT CPU seconds per run")
    parser.add_argument(
        "--gpc_cpu", type=float, default=450.0, help="GPC CPU seconds per run (0: no corrector)"
    )
    parser.add_argument(
        "--ablation",
        nargs="?",
        const="all",
        default="",
        help=f"all, or some of {','.join(ABLATIONS)}",
    )
    parser.add_argument(
        "--tgt_steps",
        type=int,
        default=0,
        help="every TGT variant gets these steps, not --tgt_cpu (levers that keep a step's cost)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained side by side")
    parser.add_argument("--tgt_set", action="append", default=[], help="TGT override KEY=VALUE")
    parser.add_argument("--gpc_set", action="append", default=[], help="GPC override KEY=VALUE")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:KEY=VALUE, a TGT variant of your own beside the default (repeat to add keys)",
    )
    parser.add_argument("--json", default="benchmarks/results/real_motion.json")
    parser.add_argument("--sweep", default="", help="a trained GPC workdir: evaluate --refine")
    parser.add_argument("--refine", action="append", default=[], help="k=v,... of config.refine")
    args = parser.parse_args()
    if not args.sweep and not (args.dataset and args.data_dir):
        parser.error("--dataset and --data_dir are required (unless --sweep)")
    result = sweep(args.sweep, args.refine or [""]) if args.sweep else run(args)
    files.write_json(args.json, result, indent=2)
    print(format_table(result["table"]))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
