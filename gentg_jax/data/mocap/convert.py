"""Motion capture folders -> VideoPose3D npz files -> TFDS `mocap_h36m/<name>_<gt|detector>`.

    summary = convert_mocap([MocapSource("cmu", "cc_base")], data_dir, "cmu")

What happens to each file (every BVH, and every AMC with its ASF, under each folder):
1. Read (`load_clip`, 50 fps, metres, z up). A malformed file is rejected (one line naming it);
   a rig point that the file lacks stops the conversion (`RigMapError`: the wrong --rig).
2. Checks on the whole clip: finite values, at least `min_frames`, rigid limbs, left/right and
   facing (`checks`). A clip that fails one is rejected with the reason.
3. Glitches (a joint faster than checks.MAX_JOINT_SPEED between two frames) cut the clip there
   rather than dropping it: the pieces between glitches are kept if they hold `min_frames`.
4. Performer, action and subject (`assign`); each piece is then placed in the subject's capture
   volume (`place_segments`, which cuts clips that travel further than the volume is wide).
   A placed piece is kept if it holds `min_frames` and at least `min_in_image_share` of its
   joint-frames lie inside all four images; dropped pieces are listed with the reason, and a
   clip that keeps no piece is rejected.
5. Each kept piece is one sequence `{subject: {"<action> <clip>[_part<k>]": (N, 17, 3)}}`
   (the protocol tables group by the text before the space: the action), projected through the
   subject's four cameras with distortion (`*_gt`) and through the detector-noise model with
   scores as a third channel (`*_detector`).
6. The files are written into a staging folder and checked there (readable by the VideoPose3D
   loader, no NaN, every sequence at least `min_frames`, the 3D reprojects onto the written gt
   2D within writer.REPROJECTION_TOLERANCE_PX), then renamed, with `conversion_summary.json`,
   to `<data_dir>/mocap_h36m_sources/<name>`; the two TFDS configs are built from them
   atomically.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import time

from tqdm import tqdm

from gentg_jax import files
from gentg_jax.data.mocap import assign, checks, placement, rigs, writer
from gentg_jax.data.mocap import summary as summary_lib

SOURCES_DIR = "mocap_h36m_sources"
SUMMARY_FILE = "conversion_summary.json"
MIN_FRAMES = 25  # half a second at 50 fps: a fast run fits the volume for little more
MIN_IN_IMAGE_SHARE = 0.9
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-.]*(_[A-Za-z0-9\-.]+)*$")


@dataclasses.dataclass(frozen=True)
class MocapSource:
    """A folder of motion files and their rig (anything `rigs.rig_map` accepts; None: the
    built-in map whose points the first file has, see `detect_rig`)."""

    path: str | os.PathLike
    rig: object = None


@dataclasses.dataclass
class _Record:
    """One file that passed the checks, with its glitch-free pieces."""

    path: pathlib.Path
    source: str
    rig: str
    clip: rigs.Clip
    pieces: list[tuple[int, int]]  # frame ranges of the whole clip, between glitches
    glitch_steps: list[int]
    dropped: list[str]
    performer: str | None = None
    subject: str | None = None
    action: str = ""
    placed: list = dataclasses.field(default_factory=list)  # [(key, start, end, pos, info)]


def clip_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Every .bvh and .amc file under `root` (hidden folders skipped), in sorted order."""
    found = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in (".bvh", ".amc")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(found)


def detect_rig(root: str | os.PathLike) -> str:
    """The one built-in rig map whose points the first motion file under `root` has."""
    found = clip_files(pathlib.Path(root))
    if not found:
        raise ValueError(f"{root}: no .bvh or .amc files under it")
    fitting = []
    for name in rigs.RIG_MAPS:
        try:
            rigs.load_clip(found[0], name)
        except rigs.RigMapError:
            continue
        fitting.append(name)
    if len(fitting) != 1:
        raise ValueError(
            f"{found[0]}: {'no' if not fitting else 'more than one'} built-in rig map fits "
            f"({fitting or sorted(rigs.RIG_MAPS)}); pass --rig (a built-in name or a JSON map)"
        )
    return fitting[0]


def _cut(clip: rigs.Clip, start: int, end: int) -> rigs.Clip:
    toes = None if clip.toes_world is None else clip.toes_world[start:end]
    return dataclasses.replace(
        clip, positions_world=clip.positions_world[start:end], toes_world=toes
    )


def read_clip(path: pathlib.Path, rig: rigs.RigMap, min_frames: int = MIN_FRAMES) -> _Record:
    """Loads and checks one file (steps 1-3 of the module docstring).

    Raises:
      RigMapError: the file lacks a point of the rig map.
      ValueError: a one-line reason naming the file, for a rejected file.
    """
    clip = rigs.load_clip(path, rig)
    problems = [checks.finite_problem(clip), checks.length_problem(clip, min_frames)]
    if problems[0] is None:
        problems += [checks.bone_length_problem(clip), checks.mirror_problem(clip)]
    if problems := [p for p in problems if p]:
        raise ValueError("; ".join(problems))
    steps = checks.glitch_steps(clip).tolist()
    bounds = [0, *(k + 1 for k in steps), clip.num_frames]
    pieces, dropped = [], []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end - start >= min_frames:
            pieces.append((start, end))
        elif end > start:
            dropped.append(f"frames {start}-{end}: {end - start} frames between glitches")
    if not pieces:
        raise ValueError(
            f"{path}: {len(steps)} glitch frames (a joint faster than "
            f"{checks.MAX_JOINT_SPEED:g} m/s) leave no piece of {min_frames} frames"
        )
    return _Record(path, "", rig.name, clip, pieces, steps, dropped)


def _place(record: _Record, min_frames: int, min_share: float) -> None:
    """Places the record's pieces in its subject's volume (step 4); fills `record.placed`."""
    kept = []
    for start, end in record.pieces:
        offset = start
        for piece, positions, info in placement.place_segments(
            _cut(record.clip, start, end), record.subject
        ):
            span = (offset, offset + piece.num_frames)
            offset += piece.num_frames
            where = f"frames {span[0]}-{span[1]}"
            if piece.num_frames < min_frames:
                record.dropped.append(f"{where}: {piece.num_frames} frames < {min_frames}")
            elif info["in_image_share"] < min_share:
                share = info["in_image_share"]
                record.dropped.append(f"{where}: in-image share {share:.3f} < {min_share:g}")
            else:
                kept.append((span, positions, info))
    whole = len(kept) == 1 and kept[0][0] == (0, record.clip.num_frames)
    stem = record.clip.name
    for k, (span, positions, info) in enumerate(kept, 1):
        key = f"{record.action} {stem if whole else f'{stem}_part{k}'}"
        record.placed.append((key, *span, positions, info))


def _assign(records: list[_Record], subjects, action_regex, roots, seed, stems) -> list[str]:
    """Sets performer, action and subject of every record; returns the rejection reasons."""
    for r in records:
        r.action = assign.clip_action(r.path, r.rig, action_regex)
    if subjects == "auto":
        for r in records:
            performer = assign.clip_performer(r.path, roots[r.source], r.rig, action_regex)
            r.performer = f"{r.source}/{performer}"
        frames = {}
        for r in records:
            frames[r.performer] = frames.get(r.performer, 0) + sum(e - s for s, e in r.pieces)
        groups = {r.performer: r.source for r in records}
        chosen = assign.auto_subjects(frames, seed, groups)
        for r in records:
            r.subject = chosen[r.performer]
        return []
    table = assign.read_subjects_csv(subjects)
    if unknown := sorted(set(table) - set(stems)):
        raise ValueError(f"{subjects}: clips with no file under the mocap folders: {unknown}")
    by_clip = {}
    for r in records:
        if r.path.stem in by_clip:
            raise ValueError(f"{subjects}: clip name {r.path.stem!r} is not unique: "
                             f"{by_clip[r.path.stem].path} and {r.path}")  # fmt: skip
        by_clip[r.path.stem] = r
    rejected = []
    for clip, r in by_clip.items():
        if clip not in table:
            rejected.append(f"{r.path}: not listed in the subjects CSV {subjects}")
            continue
        r.subject, action = table[clip]
        r.action = action or r.action
    return rejected


def _read_all(sources, min_frames) -> tuple[list[_Record], list[dict], dict, list]:
    """Reads every file of every source; returns records, rejections, roots and all files."""
    roots, todo = {}, []
    for source in sources:
        root = pathlib.Path(source.path)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such mocap folder")
        rig = rigs.rig_map(source.rig)
        label = root.resolve().name or "mocap"
        label = label if label not in roots else f"{label}{len(roots)}"
        roots[label] = root
        found = clip_files(root)
        if not found:
            raise ValueError(f"{root}: no .bvh or .amc files under it")
        todo += [(path, rig, label) for path in found]
    records, rejected = [], []
    for path, rig, label in tqdm(todo, desc="reading", unit="clip", disable=None):
        try:
            record = read_clip(path, rig, min_frames)
        except rigs.RigMapError:
            raise
        except ValueError as error:
            rejected.append({"file": str(path), "reason": str(error)})
            tqdm.write(f"rejected: {error}")
            continue
        record.source = label
        records.append(record)
    return records, rejected, roots, [path for path, _, _ in todo]


def convert_mocap(
    sources: list[MocapSource],
    data_dir: str | os.PathLike | None,
    name: str,
    *,
    subjects: str | os.PathLike = "auto",
    action_regex: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    min_frames: int = MIN_FRAMES,
    min_in_image_share: float = MIN_IN_IMAGE_SHARE,
) -> dict:
    """Converts motion capture folders into `mocap_h36m/<name>_gt` and `<name>_detector`.

    Args:
      sources: folders and their rigs; several make one combined dataset.
      data_dir: the TFDS data_dir (None or "": $TFDS_DATA_DIR or ~/tensorflow_datasets).
      name: the dataset name (letters, digits, '-', '.', '_').
      subjects: "auto" (`assign.auto_subjects`) or a CSV `clip,subject,action`.
      action_regex: actions (and performers) from file names, see `assign`.
      seed: the auto split's hash order and the detector noise.
      overwrite: rebuild datasets that exist (otherwise an existing pair is kept).
      min_frames, min_in_image_share: the piece policy of the module docstring.

    Returns:
      The conversion summary (also in `<data_dir>/mocap_h36m_sources/<name>/` and the datasets'
      metadata).
    """
    from gentg_jax.data import tfds_builders  # heavy; only the last step needs it

    if not _NAME.match(name) or name.endswith(tuple(f"_{s}" for s in tfds_builders.MOCAP_SOURCES)):
        raise ValueError(f"--name {name!r}: use letters, digits, '-', '.' and '_' (not ending "
                         f"in _gt or _detector)")  # fmt: skip
    if not sources:
        raise ValueError("no mocap folder given")
    root = tfds_builders.resolve_data_dir(data_dir)
    folder = root / SOURCES_DIR / name
    configs = [f"{tfds_builders.MOCAP_H36M}/{name}_{s}" for s in tfds_builders.MOCAP_SOURCES]
    if not overwrite and all(_built(c, root) for c in configs):
        print(f"{' and '.join(configs)} exist in {root}; kept (--overwrite rebuilds them)")
        return summary_lib.read(folder / SUMMARY_FILE)
    if subjects != "auto":
        assign.read_subjects_csv(subjects)  # a bad CSV fails before the long part
    sources = [s if s.rig is not None else MocapSource(s.path, detect_rig(s.path)) for s in sources]
    start, cpu = time.time(), time.process_time()
    records, rejected, roots, clip_paths = _read_all(sources, min_frames)
    stems = [path.stem for path in clip_paths]
    rejected += [{"file": r.split(": ")[0], "reason": r}
                 for r in _assign(records, subjects, action_regex, roots, seed, stems)]  # fmt: skip
    records = [r for r in records if r.subject is not None]
    for r in tqdm(records, desc="placing", unit="clip", disable=None):
        _place(r, min_frames, min_in_image_share)
        if not r.placed:
            reason = f"{r.path}: no piece kept ({'; '.join(r.dropped)})"
            rejected.append({"file": str(r.path), "reason": reason})
            tqdm.write(f"rejected: {reason}")
    records = [r for r in records if r.placed]
    summary_lib.require_splits(records, rejected)
    staging = folder.parent / f".incomplete-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        sequences = [(r.path, r.subject, k, pos) for r in records for k, _, _, pos, _ in r.placed]
        paths = writer.write_npz(staging, name, sequences, seed)
        writer.verify_files(paths, min_frames)
        summary = summary_lib.make(
            name, sources, subjects, seed, records, rejected, len(clip_paths),
            {"min_frames": min_frames, "min_in_image_share": min_in_image_share},
            {"wall": time.time() - start, "cpu": time.process_time() - cpu},
        )  # fmt: skip
        files.write_json(staging / SUMMARY_FILE, summary)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    built = time.time()
    tfds_builders.build_mocap_h36m(
        folder / paths["3d"].name,
        {s: folder / paths[s].name for s in tfds_builders.MOCAP_SOURCES},
        root,
        name,
        summary=summary_lib.compact(summary),
        description=summary_lib.describe(summary),
        overwrite=overwrite,
    )
    summary["seconds"]["tfds_build"] = round(time.time() - built, 1)
    files.write_json(folder / SUMMARY_FILE, summary)
    return summary


def _built(name: str, root: pathlib.Path) -> bool:
    from gentg_jax.data import tfds_builders

    try:
        tfds_builders.dataset_dir(name, root)
    except FileNotFoundError:
        return False
    return True
