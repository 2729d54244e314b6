"""Evaluates a trained workdir with the Human3.6M protocol; tables go to <workdir>/eval/.

  python -m experiments.evaluate --workdir runs/tgt
  python -m experiments.evaluate --workdir runs/tgt --checkpoint latest \
      --config configs/tgt_base.py:tiny --config.data.test_flip=False
  python -m experiments.evaluate --workdir runs/gpc --tgt_workdir runs/tgt
Without --config the config saved with the checkpoint is used. Writes eval.json, eval.csv and
eval.md (P1/P2/N-MPJPE in mm per action) and prints the Markdown table. A GPC or e2e workdir
also gets the refinement tables (coarse TGT vs refined P1/P2 per aggregate, resampled joints and
their errors, sigma-error correlation); --tgt_workdir pairs a GPC with a TGT other than the one
in its saved config (e.g. a GPC trained from GT noise); a GPC is checked against the TGT it
recorded when it was trained, and --allow_tgt_mismatch accepts another one.
"""

from absl import flags, logging

from experiments import _cli
from experiments._errors import user_errors
from gentg_jax.train import loop

_RUN = _cli.define_run_flags(
    None, "Optional config file[:variant] overriding the saved one.", "Training run directory."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "best", "Checkpoint to evaluate: a step number, 'best' or 'latest'."
)
_TGT_WORKDIR = flags.DEFINE_string(
    "tgt_workdir", None, "GPC workdirs: the TGT to refine (overrides config.tgt_workdir)."
)
_ALLOW_TGT_MISMATCH = flags.DEFINE_bool(
    "allow_tgt_mismatch",
    False,
    "GPC workdirs: accept a TGT whose parameters differ from the one the GPC was trained on.",
)


@user_errors
def main(argv: list[str]) -> None:
    _cli.start(argv, _RUN)
    step = int(_CHECKPOINT.value) if _CHECKPOINT.value.isdigit() else _CHECKPOINT.value
    _, written = loop.evaluate_checkpoint(
        _RUN.workdir.value,
        step=step,
        config=_RUN.config.value,
        tgt_workdir=_TGT_WORKDIR.value,
        allow_tgt_mismatch=_ALLOW_TGT_MISMATCH.value,
    )
    if written:
        print(written["markdown"], end="")
        logging.info(
            "tables written to %s, %s and %s", written["json"], written["csv"], written["md"]
        )


if __name__ == "__main__":
    _cli.run(main)
