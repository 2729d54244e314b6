"""The conversion summary of `convert_mocap`: what was read, kept, rejected and where it went.

Stored as `conversion_summary.json` beside the converted files; `compact` (without the per-clip
list) goes into the TFDS metadata and `describe` into the TFDS description.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from gentg_jax.data import h36m
from gentg_jax.data.mocap import checks, rigs

SPLITS = {"train": h36m.TRAIN_SUBJECTS, "test": h36m.TEST_SUBJECTS}


def _split(subject: str) -> str:
    return next(split for split, subjects in SPLITS.items() if subject in subjects)


def require_splits(records, rejected: list[dict]) -> None:
    """A ValueError unless both splits hold at least one accepted clip."""
    for split, subjects in SPLITS.items():
        if not any(r.subject in subjects for r in records):
            raise ValueError(
                f"no accepted clip is in the {split} split (subjects {', '.join(subjects)}); "
                f"{len(records)} clips accepted, {len(rejected)} rejected"
                + (f", e.g. {rejected[0]['reason']}" if rejected else "")
            )


def _rig_name(rig) -> str:
    return rig if isinstance(rig, str) else rigs.rig_map(rig).name


def _clip_entry(r) -> dict:
    return {
        "file": str(r.path),
        "source": r.source,
        "performer": r.performer,
        "subject": r.subject,
        "split": _split(r.subject),
        "action": r.action,
        "frames_read": r.clip.num_frames,
        "glitch_steps": r.glitch_steps,
        "dropped": r.dropped,
        "sequences": [
            {
                "action": key,
                "frames": [start, end],
                "in_image_share": round(info["in_image_share"], 4),
                "yaw_deg": info["yaw_deg"],
            }
            for key, start, end, _, info in r.placed
        ],
    }


def make(name, sources, subjects, seed, records, rejected, num_files, policy, seconds) -> dict:
    """The summary dict (JSON-serialisable); see the module docstring."""
    fps = rigs.TARGET_FPS
    placed = [(r, key, end - start, info) for r in records for key, start, end, _, info in r.placed]
    shares = np.array([info["in_image_share"] for *_, info in placed])
    weights = np.array([n for _, _, n, _ in placed])
    splits = {}
    for split in SPLITS:
        mine = [(r, n) for r, _, n, _ in placed if _split(r.subject) == split]
        frames = sum(n for _, n in mine)
        per_subject = {}
        for r, n in mine:
            per_subject[r.subject] = per_subject.get(r.subject, 0) + n
        splits[split] = {
            "clips": len({id(r) for r, _ in mine}),
            "sequences": len(mine),
            "frames": frames,
            "minutes": round(frames / fps / 60, 2),
            "performers": sorted({r.performer or r.subject for r, _ in mine}),
            "subject_frames": dict(sorted(per_subject.items())),
        }
    actions = {}
    for r, _, n, _ in placed:
        entry = actions.setdefault(r.action, dict.fromkeys(SPLITS, 0))
        entry[_split(r.subject)] += n
    frames_written = int(weights.sum())
    return {
        "name": name,
        "sources": [{"path": str(s.path), "rig": _rig_name(s.rig)} for s in sources],
        "subjects": str(subjects),
        "seed": seed,
        "policy": {**policy, "max_joint_speed_m_s": checks.MAX_JOINT_SPEED},
        "fps": fps,
        "clips": {"read": num_files, "accepted": len(records), "rejected": len(rejected)},
        "rejected": rejected,
        "minutes_accepted_clips": round(sum(r.clip.num_frames for r in records) / fps / 60, 2),
        "minutes": round(frames_written / fps / 60, 2),
        "frames": frames_written,
        "sequences": len(placed),
        "clips_cut_at_glitches": sum(bool(r.glitch_steps) for r in records),
        "dropped_pieces": sum(len(r.dropped) for r in records),
        "splits": splits,
        "actions": dict(sorted(actions.items())),
        "in_image_share": {
            "min": round(float(shares.min()), 4),
            "mean": round(float(np.average(shares, weights=weights)), 4),
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "clip_details": [_clip_entry(r) for r in records],
    }


def compact(summary: dict) -> dict:
    """The summary without the per-clip details (for the TFDS metadata)."""
    return {k: v for k, v in summary.items() if k != "clip_details"}


def describe(summary: dict) -> str:
    """One line for the TFDS description."""
    splits = summary["splits"]
    held_out = "; performers held out (auto split)" if summary["subjects"] == "auto" else ""
    return (
        f"{summary['clips']['accepted']} of {summary['clips']['read']} clips, "
        f"{summary['minutes']} minutes at {summary['fps']:g} fps; train {splits['train']['frames']}"
        f" frames, test {splits['test']['frames']} frames{held_out}"
    )


def format_summary(summary: dict) -> str:
    """The summary as the converter prints it."""
    clips, splits = summary["clips"], summary["splits"]
    seconds = ", ".join(f"{k} {v:g} s" for k, v in summary["seconds"].items())
    lines = [
        f"{summary['name']}: {clips['read']} clips read, {clips['accepted']} accepted, "
        f"{clips['rejected']} rejected; {summary['minutes']} of the accepted clips' "
        f"{summary['minutes_accepted_clips']} minutes kept in {summary['sequences']} sequences "
        f"({summary['dropped_pieces']} pieces dropped, {summary['clips_cut_at_glitches']} clips "
        "cut at glitches)",
        f"in-image share: min {summary['in_image_share']['min']:.3f}, "
        f"mean {summary['in_image_share']['mean']:.3f}; time: {seconds}",
    ]
    for split, entry in splits.items():
        lines.append(
            f"{split}: {entry['clips']} clips, {entry['sequences']} sequences, {entry['frames']} "
            f"frames ({entry['minutes']} min), subjects {entry['subject_frames']}, "
            f"performers {', '.join(entry['performers'])}"
        )
    lines.append("actions (train/test frames): " + ", ".join(
        f"{a} {v['train']}/{v['test']}" for a, v in summary["actions"].items()))  # fmt: skip
    lines += [f"rejected: {r['reason']}" for r in summary["rejected"]]
    return "\n".join(lines)


def read(path: pathlib.Path) -> dict:
    """A stored summary, or {} when there is none."""
    return json.loads(path.read_text()) if path.is_file() else {}
