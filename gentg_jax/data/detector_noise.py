"""A detector-like noise model for 2D keypoints, with confidence scores that follow the error.

Clean projections get per-frame jitter, a slowly drifting offset, occlusions (the estimate wanders
off) and gross errors (a jump to the left/right counterpart or far away); joints pushed outside
the image are clamped to its border. Occluded, gross-error and off-image joints score low, the
others score lower the further they are off, as a real detector's confidences do.

  noisy_px, scores = detector_noise(keypoints_px, (w, h), np.random.default_rng(0), NoiseConfig())
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gentg_jax import skeleton


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoiseConfig:
    """The detector-noise model (pixels, per axis unless said otherwise).

    Subclasses (data.synthetic.SyntheticConfig) add fields and extend `_checks`; fields are
    keyword-only, since a subclass's own fields come after these.
    """

    jitter_px: float = 2.0  # std of independent per-frame Gaussian noise
    drift_px: float = 3.0  # stationary std of a temporally correlated (AR(1)) offset
    drift_timescale_frames: float = 25.0  # correlation time of the drift
    occlusion_rate: float = 0.04  # fraction of joint-frames occluded
    occlusion_length_frames: float = 25.0  # mean length of an occlusion
    occlusion_px: float = 25.0  # std of an occluded joint's (slowly varying) error
    gross_error_rate: float = 0.01  # fraction of joint-frames with a gross error
    gross_error_length_frames: float = 3.0  # mean length of a gross error
    gross_error_px: float = 60.0  # typical size of a gross error's offset (2D norm)
    gross_error_swap_fraction: float = 0.5  # share of gross errors that take the L/R counterpart
    clean_score_mean: float = 0.92  # confidence of a well-detected joint ...
    clean_score_std: float = 0.04
    score_drop_per_px: float = 0.01  # ... lowered by this much per pixel of its actual error
    bad_score_max: float = 0.5  # occluded, gross-error and off-image joints: U(0.02, this)

    def __post_init__(self):
        for field, (ok, allowed) in self._checks().items():
            if not ok:
                value = getattr(self, field)
                raise ValueError(
                    f"{type(self).__name__}.{field}={value!r} is invalid; allowed: {allowed}"
                )

    def _checks(self) -> dict[str, tuple[bool, object]]:
        """{field: (whether its value is valid, what is allowed)}, checked in this order."""
        rates = ("occlusion_rate", "gross_error_rate", "gross_error_swap_fraction")
        lengths = ("drift_timescale_frames", "occlusion_length_frames", "gross_error_length_frames")
        non_negative = ("jitter_px", "drift_px", "occlusion_px", "gross_error_px")
        non_negative += ("clean_score_std", "score_drop_per_px")
        return {
            **{field: (0 <= getattr(self, field) < 1, "in [0, 1)") for field in rates},
            **{field: (getattr(self, field) >= 1, ">= 1") for field in lengths},
            **{field: (getattr(self, field) >= 0, ">= 0") for field in non_negative},
            "clean_score_mean": (0 <= self.clean_score_mean <= 1, "in [0, 1]"),
            "bad_score_max": (0.02 <= self.bad_score_max <= 1, "in [0.02, 1]"),
        }


def _ar1(rng: np.random.Generator, n: int, shape: tuple, std: float, timescale: float):
    """(n, *shape) stationary AR(1) noise of the given std and correlation time (frames).

    y_t = rho * y_{t-1} + sqrt(1 - rho^2) * eps_t, computed as one FFT convolution with the
    filter's impulse response; a burn-in of 5 time constants makes the start stationary.
    """
    burn = int(np.ceil(5 * timescale))
    total = n + burn
    rho = np.exp(-1.0 / timescale)
    response = np.sqrt(1 - rho**2) * rho ** np.arange(total)
    eps = rng.standard_normal((total, *shape))
    spectrum = np.fft.rfft(eps, 2 * total, axis=0)
    spectrum *= np.fft.rfft(response, 2 * total).reshape(-1, *(1,) * len(shape))
    return std * np.fft.irfft(spectrum, 2 * total, axis=0)[burn:total]


def _events(
    rng: np.random.Generator, n: int, rate: float, mean_length: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Random segments covering about `rate` of the (n, 17) joint-frames.

    Segments start independently per joint with geometric lengths of mean `mean_length`; the
    start rate is -log(1 - rate) / mean_length so that the covered fraction is `rate`. Generated
    with a burn-in so that segments already running at frame 0 count too.

    Returns:
      mask (n, 17) bool; start (n, 17) the latest start frame index, in [0, total); total, the
      number of generated frames (burn-in included), for per-segment attributes indexed by start.
    """
    burn = int(np.ceil(4 * mean_length))
    total = n + burn
    shape = (total, skeleton.NUM_JOINTS)
    starts = rng.random(shape) < -np.log1p(-rate) / mean_length
    lengths = rng.geometric(1.0 / mean_length, shape)
    frame = np.broadcast_to(np.arange(total)[:, None], shape)
    end = np.maximum.accumulate(np.where(starts, frame + lengths, 0), axis=0)
    start = np.maximum.accumulate(np.where(starts, frame, 0), axis=0)
    return (end > frame)[burn:], start[burn:], total


def detector_noise(
    keypoints_px: np.ndarray,
    image_size: tuple[int, int],
    rng: np.random.Generator,
    config: NoiseConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Detector-like 2D from clean projections: (N, 17, 2) float32 pixels, (N, 17) scores.

    Every joint gets Gaussian jitter plus an AR(1) drift. Occlusions (segments where the estimate
    wanders off by ~occlusion_px), gross errors (a jump to the left/right counterpart or far away)
    and joints outside the image (clamped to its border) are "bad": their scores are
    U(0.02, bad_score_max). Other joints score clean_score_mean +- clean_score_std, minus
    score_drop_per_px per pixel of error, so scores follow the actual error.
    """
    keypoints = np.asarray(keypoints_px, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (skeleton.NUM_JOINTS, 2):
        raise ValueError(f"keypoints_px must have shape (N, 17, 2), got {keypoints.shape}")
    n, joints = keypoints.shape[:2]
    c = config
    noisy = keypoints + rng.normal(0.0, c.jitter_px, keypoints.shape)
    noisy += _ar1(rng, n, (joints, 2), c.drift_px, c.drift_timescale_frames)
    occluded, _, _ = _events(rng, n, c.occlusion_rate, c.occlusion_length_frames)
    wander = _ar1(rng, n, (joints, 2), c.occlusion_px, c.occlusion_length_frames / 2)
    gross, start, total = _events(rng, n, c.gross_error_rate, c.gross_error_length_frames)
    # Per-segment attributes, drawn for every possible start frame and looked up by the start.
    has_counterpart = np.asarray(skeleton.FLIP_PERMUTATION) != np.arange(joints)
    swap = (rng.random((total, joints)) < c.gross_error_swap_fraction) & has_counterpart
    angle = rng.uniform(0, 2 * np.pi, (total, joints))
    size = c.gross_error_px * rng.uniform(0.5, 1.5, (total, joints))
    offset = size[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    swap = np.take_along_axis(swap, start, axis=0)
    offset = np.take_along_axis(offset, start[..., None], axis=0)
    jumped = np.where(swap[..., None], noisy[:, skeleton.FLIP_PERMUTATION], noisy + offset)
    noisy = np.where(occluded[..., None], noisy + wander, noisy)
    noisy = np.where(gross[..., None], jumped, noisy)
    bounds = np.asarray(image_size, np.float64) - 1
    outside = np.any((noisy < 0) | (noisy > bounds), axis=-1)
    noisy = np.clip(noisy, 0, bounds)
    error = np.linalg.norm(noisy - keypoints, axis=-1)
    clean = c.clean_score_mean + c.clean_score_std * rng.standard_normal((n, joints))
    clean -= c.score_drop_per_px * error
    bad = rng.uniform(0.02, c.bad_score_max, (n, joints))
    scores = np.clip(np.where(occluded | gross | outside, bad, clean), 0, 1)
    return noisy.astype(np.float32), scores.astype(np.float32)
