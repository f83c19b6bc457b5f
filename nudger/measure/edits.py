"""What editing a journey does to measuring it, said before `journeys sync` applies it.

- A behaviour added later is measured from then on; people past their start
  have no status quo for it, so they are left out of its pairs.
- A removed behaviour keeps its ratings (in the export), hidden from the panel.
- Rewording a keyed behaviour keeps its ratings; rewording a plain string
  makes a new behaviour (its key comes from its words).
- Changing who rates or when (or anything that moves the end: steps, the
  schedule) re-times the check-ins not yet sent; sent ones stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nudger.journeys.spec import JourneySpec, MeasureSpec, behaviour_key


@dataclass
class MeasureEdit:
    """Lines for the dry run, and whether unsent check-ins must be planned again."""

    lines: list[str] = field(default_factory=list)
    replan: bool = False


def _goal(spec: dict) -> list[tuple[str, str, bool]]:
    """Return a stored spec's behaviours as (key, text, written as a plain string)."""
    found = []
    for item in spec.get("goal") or []:
        if isinstance(item, str):
            found.append((behaviour_key(item), item.strip(), True))
        else:
            found.append((item["key"], item["text"], False))
    return found


def measure_edit(old: dict, new: JourneySpec, steps_changed: bool) -> MeasureEdit:
    """Compare the stored spec with the file's and say what happens to measurement."""
    edit = MeasureEdit()
    new_dump = new.model_dump(mode="json")
    measured = bool(old.get("measure")) or new.measure is not None
    if not measured:
        return edit
    before = {key: (text, plain) for key, text, plain in _goal(old)}
    after = {item.key: (item.text, item.plain) for item in new.goal}
    added = [k for k in after if k not in before]
    removed = [k for k in before if k not in after]
    plain_added = [k for k in added if after[k][1]]
    plain_removed = [k for k in removed if before[k][1]]
    for old_key, new_key in zip(plain_removed, plain_added, strict=False):
        edit.lines.append(
            f"behaviour reworded without a key: {new_key!r} is a new behaviour "
            f"(people past their start have no status quo for it); {old_key!r} keeps its "
            "ratings. Give it a `key:` to keep one behaviour across wordings."
        )
        added.remove(new_key)
        removed.remove(old_key)
    for key in added:
        edit.lines.append(
            f"behaviour added {key!r}: measured from its next check-in; people past "
            "their start have no status quo for it and are left out of its pairs"
        )
    for key in removed:
        edit.lines.append(
            f"behaviour removed {key!r}: its ratings stay in the export, hidden from the panel"
        )
    for key in after:
        if key in before and before[key][0] != after[key][0]:
            edit.lines.append(f"behaviour reworded {key!r}: keeps its ratings")
    # Compared as validated, so defaults written out or left out read alike.
    old_measure = (
        MeasureSpec.model_validate(old["measure"]).model_dump(mode="json")
        if old.get("measure")
        else None
    )
    if old_measure != new_dump["measure"]:
        if new.measure is None:
            edit.lines.append("measure removed: no more check-ins; ratings so far are kept")
        elif not old.get("measure"):
            edit.lines.append(
                "measure added: check-ins planned at the next tick; people past their "
                "start get no status-quo check-in"
            )
        else:
            edit.lines.append(
                "measure changed: check-ins not yet sent are re-timed; sent ones stay"
            )
        edit.replan = True
    elif steps_changed or old.get("schedule") != new_dump["schedule"]:
        edit.lines.append("the end moves with the steps: check-ins not yet sent are re-timed")
        edit.replan = True
    return edit
