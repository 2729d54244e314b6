"""experiments/_cli.py: the setup every entrypoint's main runs with."""

import pytest

from experiments import _cli
from gentg_jax.train import loop


def test_ctrl_c_prints_one_line_and_exits_130(capsys):
    def main(argv):
        raise loop.Interrupted(412, 400)

    with pytest.raises(SystemExit) as exited:
        _cli.with_setup(main)(["train_tgt"])
    assert exited.value.code == 130
    err = capsys.readouterr().err
    assert err == (
        "interrupted at step 412; rerun the same command to resume "
        "(from the checkpoint of step 400)\n"
    )

    def plain(argv):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        _cli.with_setup(plain)(["evaluate"])
    assert exited.value.code == 130 and capsys.readouterr().err == "interrupted\n"
