"""Inference for users: restore a checkpoint anywhere, lift 2D keypoint sequences of any length.

  from gentg_jax import load_predictor
  predictor = load_predictor("runs/tgt")  # a workdir, its checkpoints/ or one step directory
  out = predictor.predict(keypoints_2d, scores, image_size=(1000, 1002), layout="coco")
  out["coarse_3d"], out["uncertainty"], out.get("refined_3d")

Input checking and conversion live in `inputs`, sliding windows and their blending in
`windows`. The windows are lifted in batches by `gentg_jax.predict.lift_windows` (the recipe
evaluation uses too), jitted with the parameters as an argument. Test-time flip averaging of the
coarse pose follows the saved config (`data.test_flip`); the corrector then refines it.

Workdir kinds (`config.task` of the saved config):
  tgt  coarse poses only; refine=True is an error.
  gpc  the corrector; its TGT is found by `checkpoint.paired_tgt_workdir` (the recorded or
       saved `tgt_workdir`, a workdir of that name beside the GPC's, or `tgt_path=`) and read at
       the step the GPC recorded; a TGT whose parameters differ from the GPC's record is
       refused unless `allow_tgt_mismatch=True` (`checkpoint.restore_paired_tgt`).
  e2e  one checkpoint whose params are {'tgt': ..., 'gpc': ...}; the saved config embeds the full
       saved TGT and GPC configs as `config.tgt` and `config.gpc` (refinement settings from
       `config.refine` when present, else `config.gpc.refine`).
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gentg_jax import camera as camera_lib
from gentg_jax import checkpoint, diffusion, logs, skeleton
from gentg_jax import predict as predict_lib
from gentg_jax.inference import windows
from gentg_jax.inference.inputs import camera_intrinsics, generic_intrinsics, prepare_keypoints
from gentg_jax.models import gpc, tgt
from gentg_jax.types import PyTree

_J = skeleton.NUM_JOINTS


def _check_params(what: str, model: Any, params: PyTree, *inputs: Any) -> None:
    """Raises CheckpointError unless `params` has the names and shapes `model.init` makes."""
    expected = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *inputs)["params"])
    flat = [jax.tree_util.tree_leaves_with_path(t) for t in (expected, params)]
    want, got = ({jax.tree_util.keystr(p): np.shape(v) for p, v in leaves} for leaves in flat)
    if want != got:
        missing, unexpected = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
        wrong = [
            (k, got[k], want[k]) for k in sorted(want.keys() & got.keys()) if want[k] != got[k]
        ]
        raise checkpoint.CheckpointError(
            f"the {what} parameters do not fit the model of the saved config: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}, wrong shapes {wrong[:3]}"
        )


class Predictor:
    """A restored TGT (and optional GPC corrector) that lifts 2D keypoint sequences.

    Attributes:
      config / gpc_config: the saved TGT config and the GPC's (None without a corrector).
      num_frames: the window length T (the TGT's `data.num_frames`).
      window_stride: default frames between window starts (T // 2 unless given).
      batch_size: the most windows per jitted call; smaller calls are padded to a power of two,
        so few shapes (hence compilations) occur.
      flip: test-time flip averaging of the coarse pose (default: the config's data.test_flip).
      params: {'tgt': ..., 'gpc': ...} on the default device.
      trace_count: how often the window function was traced (= compiled) so far.
    """

    def __init__(
        self,
        tgt_config: ml_collections.ConfigDict,
        tgt_params: PyTree,
        gpc_config: ml_collections.ConfigDict | None = None,
        gpc_params: PyTree | None = None,
        *,
        refine_config: ml_collections.ConfigDict | None = None,
        flip: bool | None = None,
        window_stride: int | None = None,
        batch_size: int = 32,
    ):
        self.config, self.gpc_config = tgt_config, gpc_config
        self.num_frames = int(tgt_config.data.num_frames)
        self.flip = bool(tgt_config.data.get("test_flip", True) if flip is None else flip)
        self.window_stride = int(window_stride or max(self.num_frames // 2, 1))
        # Called for its check of the stride against T.
        windows.window_starts(self.num_frames, self.num_frames, self.window_stride)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self._tgt_model = tgt.TemporalGraphLimbTransformer.from_config(tgt_config.model)
        x, scores = jnp.zeros((1, self.num_frames, _J, 2)), jnp.ones((1, self.num_frames, _J))
        _check_params("TGT", self._tgt_model, tgt_params, x, scores)
        params, self._refiner = {"tgt": tgt_params}, None
        if gpc_config is not None:
            model = gpc.PoseDenoiser.from_config(gpc_config.model)
            pose = jnp.zeros(x.shape[:-1] + (3,))
            _check_params("GPC", model, gpc_params, pose, 0, x, pose, scores)
            schedule = diffusion.make_schedule(gpc_config.diffusion)
            refine_config = refine_config or gpc_config.refine
            self._refiner = predict_lib.Refiner(model, schedule, refine_config)
            params["gpc"] = gpc_params
        self.params = jax.device_put(params)
        self.trace_count = 0
        self._functions: dict[bool, Any] = {}

    @property
    def has_refiner(self) -> bool:
        return self._refiner is not None

    def _refine(self, refine: bool | None) -> bool:
        if refine is None:
            return self.has_refiner
        if refine and not self.has_refiner:
            raise ValueError(
                "refine=True needs a GPC corrector, but this checkpoint is TGT-only "
                f"(task {self.config.get('task', 'tgt')!r}); load a GPC or e2e workdir, or "
                "pass refine=None/False for coarse poses"
            )
        return bool(refine)

    def _function(self, refine: bool):
        if refine not in self._functions:
            lift = functools.partial(
                predict_lib.lift_windows,
                tgt_model=self._tgt_model,
                flip=self.flip,
                refiner=self._refiner if refine else None,
            )

            def traced(params, keypoints_2d, scores, intrinsics, window_ids, seed):
                self.trace_count += 1  # runs only while tracing
                keys = predict_lib.window_keys(jax.random.PRNGKey(seed), window_ids)
                out = lift(params, keypoints_2d, scores, intrinsics, keys)
                result = {"coarse_3d": out["coarse_3d"], "uncertainty": jnp.exp(out["log_sigma"])}
                if refine:
                    result["refined_3d"] = out["joints_3d"]
                    result["resampled"] = out["resample_mask"].astype(jnp.float32)
                return result

            self._functions[refine] = jax.jit(traced)
        return self._functions[refine]

    def predict_windows(
        self,
        keypoints_2d: np.ndarray,
        scores: np.ndarray,
        intrinsics: np.ndarray | None = None,
        *,
        refine: bool = False,
        seed: int = 0,
        window_ids: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Outputs for windows that are already normalised (what evaluation batches hold).

        Args:
          keypoints_2d: (N, T, 17, 2) normalised screen coordinates; scores (N, T, 17).
          intrinsics: (N, 9) normalised (refinement only); default a generic square-image camera.
          refine: run the corrector; seed / window_ids: window n's noise comes from
            fold_in(PRNGKey(seed), window_ids[n]) (default ids 0..N-1).

        Returns:
          numpy 'coarse_3d' (N, T, 17, 3), 'uncertainty' (N, T, 17) and, when refining,
          'refined_3d' (N, T, 17, 3) and 'resampled' (N, T, 17): 1.0 where the joint was
          resampled, 0.0 where it was kept.
        """
        refine = self._refine(refine)
        n, shape = len(keypoints_2d), (self.num_frames, _J)
        if not n or np.shape(keypoints_2d)[1:] != shape + (2,) or np.shape(scores) != (n,) + shape:
            raise ValueError(
                f"windows must be keypoints (N, {self.num_frames}, 17, 2) and scores (N, "
                f"{self.num_frames}, 17); got {np.shape(keypoints_2d)} and {np.shape(scores)}"
            )
        if not 0 <= int(seed) < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {seed}")
        if intrinsics is None:
            intrinsics = np.broadcast_to(generic_intrinsics((1.0, 1.0)), (n, 9))
        ids = np.arange(n) if window_ids is None else window_ids
        inputs = [np.asarray(keypoints_2d, np.float32), np.asarray(scores, np.float32)]
        inputs += [np.asarray(intrinsics, np.float32), np.asarray(ids, np.int32)]
        chunks = []
        # A bar only for long inputs (several window batches); shown on terminals only.
        bar = logs.progress(
            desc="predict", total=n, unit="window", leave=False, enabled=n > 4 * self.batch_size
        )
        for first in range(0, n, self.batch_size):
            rows = np.arange(first, min(first + self.batch_size, n))
            size = min(self.batch_size, 1 << (len(rows) - 1).bit_length())
            padded = np.pad(rows, (0, size - len(rows)), mode="edge")  # few distinct shapes
            out = self._function(refine)(self.params, *(a[padded] for a in inputs), np.uint32(seed))
            chunks.append({k: v[: len(rows)] for k, v in jax.device_get(out).items()})
            bar.update(len(rows))
        bar.close()
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def predict(
        self,
        keypoints_2d: Any,
        scores: Any = None,
        image_size: Any = None,
        layout: str = "h36m",
        refine: bool | None = None,
        seed: int = 0,
        camera: Any = None,
        stride: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Lifts pixel 2D keypoints to root-relative camera-frame 3D poses in metres.

        Args:
          keypoints_2d: (T, 17, 2) or (B, T, 17, 2) pixels, any T >= 1; NaN joints are missing
            (needs `scores`). Coordinates outside the image are fine.
          scores: optional (T, 17) / (B, T, 17) confidences; None means ones.
          image_size: (w, h) pixels, or (B, 2). Required.
          layout: "h36m" or "coco" (COCO-17 order, converted to H36M).
          refine: None refines when a corrector is loaded; True without one is an error.
          seed: noise seed of the refinement (deterministic per seed).
          camera: normalised intrinsics (9,) or (B, 9) for the reprojection-based aggregation;
            default `generic_intrinsics(image_size)`.
          stride: frames between window starts (default `window_stride`).

        Returns:
          numpy 'coarse_3d' (..., T, 17, 3), 'uncertainty' (..., T, 17) sigma in metres and,
          when refining, 'refined_3d' (..., T, 17, 3) and 'resampled' (..., T, 17), the
          fraction of the overlapping windows that resampled each joint (the rest kept the
          coarse joint); batched like the input.
        """
        refine = self._refine(refine)
        keypoints, scores, size = prepare_keypoints(keypoints_2d, scores, image_size, layout)
        batch, length = keypoints.shape[:2]
        size_b = size[:, None, None]
        normalised = camera_lib.normalize_screen_coordinates(
            keypoints, size_b[..., 0], size_b[..., 1]
        )
        intrinsics = camera_intrinsics(camera, size)
        stride = int(stride or self.window_stride)
        starts = windows.window_starts(length, self.num_frames, stride)
        frames = windows.window_frames(starts, self.num_frames, length)
        n = batch * len(starts)
        outputs = self.predict_windows(
            normalised[:, frames].reshape(n, self.num_frames, _J, 2),
            scores[:, frames].reshape(n, self.num_frames, _J),
            np.repeat(intrinsics, len(starts), axis=0),
            refine=refine,
            seed=seed,
            window_ids=np.tile(starts, batch),
        )
        result = {
            k: windows.blend_windows(v.reshape((batch, len(starts)) + v.shape[1:]), starts, length)
            for k, v in outputs.items()
        }
        return {k: v[0] for k, v in result.items()} if np.ndim(keypoints_2d) == 3 else result


def load_predictor(
    path: str | pathlib.Path,
    step: int | str | None = None,
    *,
    tgt_path: str | pathlib.Path | None = None,
    ema: bool = True,
    flip: bool | None = None,
    window_stride: int | None = None,
    batch_size: int = 32,
    allow_tgt_mismatch: bool = False,
) -> Predictor:
    """Restores a TGT, GPC or e2e checkpoint onto this process's default device.

    Args:
      path: a workdir, its checkpoints/ directory or one step directory.
      step: None/'latest', 'best' (lowest eval P1) or an int; a damaged newest (best) step is
        skipped for the next intact one, with a warning.
      tgt_path: where a GPC workdir's TGT is, overriding the saved config.tgt_workdir (it is
        still checked against the TGT the GPC was trained on).
      allow_tgt_mismatch: accept a TGT whose parameters differ from the GPC's record.
      ema: the EMA parameters (what evaluation reports) instead of the raw ones.
      flip, window_stride, batch_size: see `Predictor`.

    Raises:
      FileNotFoundError: no checkpoint at `path` (or at the GPC's TGT workdir).
      ValueError: a GPC trained without a TGT and no `tgt_path`.
      checkpoint.CheckpointError: a partial or corrupt checkpoint (a ValueError).
      checkpoint.TGTMismatchError: a GPC's TGT is not the one it was trained on.
      ValueError: a config this module cannot serve.
    """
    path = pathlib.Path(path)
    config, params = checkpoint.restore_params(path, step, ema)
    task = config.get("task", "tgt")
    options = {"flip": flip, "window_stride": window_stride, "batch_size": batch_size}
    if task == "tgt":
        return Predictor(config, params, **options)
    if task == "gpc":
        location = checkpoint.paired_tgt_workdir(path, config, tgt_path)
        tgt, _ = checkpoint.restore_paired_tgt(
            location,
            config.get("tgt_provenance"),
            allow_mismatch=allow_tgt_mismatch,
            gpc=f"the GPC at {path}",
        )
        return Predictor(tgt.config, tgt.params, config, params, **options)
    if task == "e2e":
        missing = [k for k in ("tgt", "gpc") if k not in params or k not in config]
        if missing:
            raise checkpoint.CheckpointError(
                f"e2e checkpoint {path} lacks {missing}: expected params {{'tgt', 'gpc'}} and "
                "the saved TGT and GPC configs as config.tgt and config.gpc"
            )
        refine_config = config.get("refine") or config.gpc.refine
        return Predictor(
            config.tgt, params["tgt"], config.gpc, params["gpc"],
            refine_config=refine_config, **options,
        )  # fmt: skip
    raise ValueError(f"{path}: config.task={task!r}; inference serves 'tgt', 'gpc' and 'e2e'")
