"""Trains the TGT lifter (resuming from --workdir when it holds checkpoints).

  python -m experiments.train_tgt --config configs/tgt_base.py:tiny --workdir runs/tgt
  python -m experiments.train_tgt --config configs/tgt_base.py --workdir runs/tgt_base \
      --config.data.data_dir=/data/tfds --config.train.batch_size=128
Multi-host: run the same command on every host with --jax_distributed.
"""

from experiments import _cli
from experiments._errors import user_errors

main = user_errors(_cli.training_main("configs/tgt_base.py"))

if __name__ == "__main__":
    _cli.run(main)
