"""Who performs a clip, what they do, and which Human3.6M subject's cameras see them.

Actions (`clip_action`) and performers (`clip_performer`) come from file names:
- `action_regex` (user's, searched in the file name without its suffix): the named group
  `action` (else group 1, else the whole match) is the action; a named group `performer`, when
  present, is the performer. A file it does not match falls back to the rig's default rule.
- bandai (`dataset-1_<content>_<style>_<take>`): action = content, performer = style. The three
  actors of the Bandai-Namco set are not in the file names, so the style stands in for the
  performer: an `auto` split holds styles out, not actors.
- cmu / cc_base (`SS_TT` / `SSS_TT`, CMU subject and trial): performer = the CMU subject
  number; action = `CMU_ACTIONS` (the content of the CMU subjects 1, 2, 3, 5, 6 and 7 as the
  CMU listing gives it; per trial for subject 2), else "cmu<subject>".
- anything else: action = the file name without a trailing take number (`walk_03` -> walk);
  performer = the first folder under the mocap directory (files in the directory itself need a
  regex with a `performer` group, or a CSV).
Actions never hold spaces (the protocol tables merge everything after the first space).

Subjects: `auto_subjects` keeps every performer in one split (test: S9, S11; train: S1, S5, S6,
S7, S8) by a seeded hash order, each mocap folder on its own; `read_subjects_csv` reads a user's
`clip,subject,action` table.
"""

from __future__ import annotations

import csv
import hashlib
import pathlib
import re

from gentg_jax.data import h36m

TEST_SHARE = 0.25  # the auto split's test split holds at most this share of the frames
BANDAI_PATTERN = re.compile(r"^dataset-1_(?P<action>[^_]+)_(?P<performer>[^_]+)_\d+$")
CMU_PATTERN = re.compile(r"^(?P<subject>\d+)_(?P<trial>\d+)$")
# CMU subject -> content (all trials), or {trial: content}; from the CMU listing.
CMU_ACTIONS = {
    1: "playground",  # climb, sit, jump on playground equipment
    2: {1: "walk", 2: "walk", 3: "run", 4: "jump", 5: "punch", 6: "bend-scoop",
        7: "swordplay", 8: "swordplay", 9: "swordplay", 10: "wash"},
    3: "terrain-walk",  # walk on uneven terrain
    5: "dance",  # modern dance
    6: "basketball",
    7: "walk",
}  # fmt: skip


def _clean(action: str) -> str:
    return re.sub(r"\s+", "-", action.strip()) or "unknown"


def _regex_groups(stem: str, action_regex: str | None) -> dict[str, str] | None:
    if not action_regex:
        return None
    match = re.search(action_regex, stem)
    if match is None:
        return None
    groups = match.groupdict()
    action = groups.get("action") or (match.group(1) if match.re.groups else match.group(0))
    return {"action": action, "performer": groups.get("performer")}


def clip_action(path: pathlib.Path, rig: str, action_regex: str | None = None) -> str:
    """The action of a clip file (see the module docstring)."""
    stem = path.stem
    if (groups := _regex_groups(stem, action_regex)) and groups["action"]:
        return _clean(groups["action"])
    if rig == "bandai" and (match := BANDAI_PATTERN.match(stem)):
        return _clean(match.group("action"))
    if rig in ("cmu", "cc_base") and (match := CMU_PATTERN.match(stem)):
        subject, trial = int(match.group("subject")), int(match.group("trial"))
        content = CMU_ACTIONS.get(subject)
        if isinstance(content, dict):
            content = content.get(trial)
        return content or f"cmu{subject:02d}"
    return _clean(re.sub(r"[_\-\s]*\d+$", "", stem) or stem)


def clip_performer(
    path: pathlib.Path, root: pathlib.Path, rig: str, action_regex: str | None = None
) -> str:
    """The performer of a clip file under `root` (see the module docstring)."""
    stem = path.stem
    if (groups := _regex_groups(stem, action_regex)) and groups["performer"]:
        return groups["performer"]
    if rig == "bandai" and (match := BANDAI_PATTERN.match(stem)):
        return match.group("performer")
    if rig in ("cmu", "cc_base") and (match := CMU_PATTERN.match(stem)):
        return f"{int(match.group('subject')):02d}"
    parts = path.relative_to(root).parts
    if len(parts) > 1:
        return parts[0]
    raise ValueError(
        f"{path}: cannot tell its performer from the file name; put each performer's files in "
        "a folder of their own, pass --action_regex with a (?P<performer>...) group, or map "
        "clips to subjects with a CSV (--subjects)"
    )


def _hash_order(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def _spread(performers: list[str], frames: dict[str, int], subjects: tuple[str, ...]) -> dict:
    """Each performer (most frames first) to the split subject with the fewest frames so far."""
    load = dict.fromkeys(subjects, 0)
    chosen = {}
    for performer in sorted(performers, key=lambda p: (-frames[p], p)):
        subject = min(subjects, key=lambda s: (load[s], subjects.index(s)))
        chosen[performer] = subject
        load[subject] += frames[performer]
    return chosen


def _held_out(frames: dict[str, int], seed: int) -> list[str]:
    """The test performers of one group: hash order, up to TEST_SHARE of its frames."""
    if len(frames) < 2:
        return []  # a lone performer trains
    total, test, test_frames = sum(frames.values()), [], 0
    for performer in sorted(frames, key=lambda p: _hash_order(p, seed)):
        if not test or test_frames + frames[performer] <= TEST_SHARE * total:
            test.append(performer)
            test_frames += frames[performer]
    return test


def auto_subjects(
    frames: dict[str, int], seed: int = 0, groups: dict[str, str] | None = None
) -> dict[str, str]:
    """Performer -> H36M subject: a deterministic split that keeps each performer in one split.

    Within each group (a mocap folder: each set is split on its own, so a combined dataset's
    test split is the union of its sets' test splits), performers are ordered by a hash of
    (seed, name); in that order each goes to the test split if the group's test performers then
    hold at most TEST_SHARE of the group's frames (the first one always does; a group of one
    performer trains). Within a split, performers are spread over the split's subjects (whose
    cameras then see them) so that each subject gets about as many frames.

    Args:
      frames: performer -> number of frames.
      seed: changes the hash order, hence which performers are held out.
      groups: performer -> group (default: one group).
    """
    groups = groups or dict.fromkeys(frames, "")
    test = []
    for group in sorted(set(groups.values())):
        test += _held_out({p: n for p, n in frames.items() if groups[p] == group}, seed)
    train = [p for p in frames if p not in test]
    if not test or not train:
        raise ValueError(
            "an auto split needs at least two performers in a folder (one per split), found "
            f"{sorted(frames)}; use a CSV (--subjects) to assign them by hand"
        )
    return {
        **_spread(train, frames, h36m.TRAIN_SUBJECTS),
        **_spread(test, frames, h36m.TEST_SUBJECTS),
    }


def read_subjects_csv(path: str | pathlib.Path) -> dict[str, tuple[str, str | None]]:
    """`{clip: (subject, action or None)}` from a CSV with the header `clip,subject,action`.

    `clip` is a file name without its suffix; `subject` an H36M subject (h36m.SUBJECTS); an
    empty `action` means the default rule. Errors name the file and the row.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such subjects CSV")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if header[:2] != ["clip", "subject"] or len(header) > 3 or header[2:] not in ([], ["action"]):
        raise ValueError(f"{path}:1: the header must be 'clip,subject,action', got {rows[:1]}")
    table = {}
    for line, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
        if len(row) > len(header) or not cells[0]:
            raise ValueError(f"{path}:{line}: expected {','.join(header)}, got {row}")
        clip, subject = pathlib.PurePath(cells[0]).stem, cells[1]
        if subject not in h36m.SUBJECTS:
            raise ValueError(
                f"{path}:{line}: clip {clip!r}: unknown subject {subject!r}; use an H36M "
                f"subject: {', '.join(h36m.SUBJECTS)} (train {', '.join(h36m.TRAIN_SUBJECTS)}; "
                f"test {', '.join(h36m.TEST_SUBJECTS)})"
            )
        if clip in table:
            raise ValueError(f"{path}:{line}: clip {clip!r} is listed twice")
        action = cells[2] if len(cells) > 2 and cells[2] else None
        table[clip] = (subject, None if action is None else _clean(action))
    if not table:
        raise ValueError(f"{path}: no rows under the header")
    return table
