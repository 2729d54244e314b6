"""Inference for users: restore a checkpoint anywhere, lift 2D keypoint sequences of any length.

from gentg_jax.inference import load_predictor
predictor = load_predictor("runs/tgt")  # a workdir, its checkpoints/ or one step directory
out = predictor.predict(keypoints_2d, scores, image_size=(1000, 1002), layout="coco")

predictor.py  Predictor and load_predictor
inputs.py     input checks and conversion (pure numpy)
windows.py    sliding windows and their blending (pure numpy)
io.py         the infer command's files: read_input, write_result, infer_file
"""

from gentg_jax.inference.inputs import generic_intrinsics, prepare_keypoints
from gentg_jax.inference.io import infer_file, read_input, write_result
from gentg_jax.inference.predictor import Predictor, load_predictor

__all__ = [
    "Predictor",
    "generic_intrinsics",
    "infer_file",
    "load_predictor",
    "prepare_keypoints",
    "read_input",
    "write_result",
]
