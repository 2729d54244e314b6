"""Offline inference on a 2D keypoint file (experiments/infer.py).

  python -m experiments.infer --config configs/infer_offline.py \
      --config.checkpoint=runs/e2e --input seq.npz --output out.npz
  python -m experiments.infer --config configs/infer_offline.py --config.checkpoint=runs/tgt \
      --input data_2d_custom_myvideos.npz --config.video=walk --config.refine=False

The input is either an npz with `keypoints` (T, 17, 2) pixels (a third channel is taken as
scores) and optional `scores` (T, 17), `image_size` (w, h) and `layout`, or a VideoPose3D custom
2D file (`positions_2d` / `metadata`, written by its data/prepare_data_2d_custom.py).
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg  # one variant
    config = ml_collections.ConfigDict()
    config.checkpoint = ""  # a workdir, its checkpoints/ or one step directory (required)
    config.step = "latest"  # "latest", "best" (lowest eval P1) or a step number
    config.tgt_path = ""  # a GPC workdir's TGT if moved ("" = its saved config.tgt_workdir)
    # use a TGT whose parameters differ from the one the GPC was trained on
    config.allow_tgt_mismatch = False
    config.refine = config_dict.placeholder(bool)  # None: refine when the checkpoint has a GPC
    config.seed = 0  # refinement noise seed
    config.flip = config_dict.placeholder(bool)  # None: the checkpoint's data.test_flip
    config.layout = ""  # "h36m" | "coco"; "" = the input file's (else h36m)
    config.image_size = config_dict.placeholder(tuple)  # (w, h); None = the input file's
    config.video = ""  # the video of a VideoPose3D custom file ("" = its only one)
    config.window_stride = 0  # frames between window starts; 0 = half the model's window
    config.batch_size = 32  # windows per device call
    config.output = "outputs/infer_result.npz"  # --output overrides it
    return config
