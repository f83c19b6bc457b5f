"""What a journey edit does to the people on it: per step, counted over live enrolments.

`nudger journeys sync` prints it (and `--dry-run` prints only it); see the
policy in `nudger.enrolments.journey_edits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nudger.wording import ngettext

STEP_FIELDS = ("day", "kind", "title", "minutes", "link", "body", "due_after", "confirmed_by", "at")
INVITE_FIELDS = ("title", "minutes", "at")  # what a calendar invite shows
LIVE = ("active", "paused")
CHUNK = 2000


@dataclass
class StepEffect:
    """What one changed step means for the journey's live enrolments."""

    key: str
    change: str  # added|moved|removed|reworded
    day: int | None = None
    old_day: int | None = None
    scheduled: int = 0  # will get it at its (new) time, or with its new wording
    skipped: int = 0  # its time has passed for them, or they are past it: never sent
    kept: int = 0  # they already have it: it stays as it was
    cancelled: int = 0  # removed before it reached them
    invite_updates: int = 0
    invite_cancels: int = 0

    def describe(self) -> str:
        if self.change == "moved":
            head = f"moved {self.key} (day {self.old_day} -> {self.day})"
        elif self.change == "added":
            head = f"added {self.key} (day {self.day})"
        else:
            head = f"{self.change} {self.key}"
        if self.change == "reworded":
            scheduled = ngettext(
                "new wording for %(num)d person who has not received it",
                "new wording for %(num)d people who have not received it",
                self.scheduled,
            )
        else:
            scheduled = ngettext(
                "scheduled for %(num)d person who has not reached it",
                "scheduled for %(num)d people who have not reached it",
                self.scheduled,
            )
        parts = [
            (self.kept, ngettext(
                "already sent to %(num)d person: stays as it was",
                "already sent to %(num)d people: stays as it was", self.kept)),
            (self.scheduled, scheduled),
            (self.skipped, ngettext(
                "skipped for %(num)d person: its send time has passed for them",
                "skipped for %(num)d people: its send time has passed for them", self.skipped)),
            (self.cancelled, ngettext(
                "cancelled for %(num)d person who had not received it",
                "cancelled for %(num)d people who had not received it", self.cancelled)),
            (self.invite_updates, ngettext(
                "invite update to %(num)d person",
                "invite update to %(num)d people", self.invite_updates)),
            (self.invite_cancels, ngettext(
                "invite cancelled for %(num)d person",
                "invite cancelled for %(num)d people", self.invite_cancels)),
        ]  # fmt: skip
        text = "; ".join(words for count, words in parts if count)
        return f"{head}: {text or 'no live enrolment affected'}"


@dataclass
class JourneyChange:
    """What syncing one journey file does, to the journey and to the people on it."""

    slug: str
    new: bool = False
    unchanged: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # the step's day changed
    reworded: list[str] = field(default_factory=list)  # anything else about the step changed
    schedule_changed: bool = False
    live_enrolments: int = 0
    effects: list[StepEffect] = field(default_factory=list)
    retimed: int = 0  # enrolments whose unsent steps a schedule change moves
    due_now: int = 0  # ... of which have a step whose new time has already passed
    measurement: list[str] = field(default_factory=list)  # what the edit does to check-ins
    replan_checkins: bool = False
    # Decisions for apply_sync: (enrolment id, step key) to close unsent,
    # (enrolment-step id, new invite start or None, tell the learner now).
    skips: list[tuple[int, str]] = field(default_factory=list, repr=False)
    invite_moves: list[tuple[int, datetime | None, bool]] = field(default_factory=list, repr=False)
    invite_cancels: list[int] = field(default_factory=list, repr=False)

    def to_json(self) -> dict:
        return {
            "slug": self.slug,
            "new": self.new,
            "unchanged": self.unchanged,
            "added": self.added,
            "removed": self.removed,
            "moved": self.moved,
            "reworded": self.reworded,
            "schedule_changed": self.schedule_changed,
            "live_enrolments": self.live_enrolments,
            "retimed": self.retimed,
            "due_now": self.due_now,
            "effects": [e.__dict__.copy() for e in self.effects],
            "measurement": self.measurement,
        }

    def describe(self) -> str:
        if self.new:
            return f"{self.slug}: new journey"
        if self.unchanged:
            return f"{self.slug}: unchanged"
        parts = [
            f"{label} {', '.join(keys)}"
            for label, keys in (
                ("added", self.added),
                ("removed", self.removed),
                ("moved", self.moved),
                ("reworded", self.reworded),
            )
            if keys
        ]
        if self.schedule_changed:
            parts.append("schedule changed")
        body = "; ".join(parts) or "settings changed"
        live = ngettext("%(num)d live enrolment", "%(num)d live enrolments", self.live_enrolments)
        lines = [f"{self.slug}: {body} ({live})"]
        if self.live_enrolments:
            lines += [f"  {effect.describe()}" for effect in self.effects]
            if self.schedule_changed:
                retimed = ngettext(
                    "re-times unsent steps for %(num)d enrolment",
                    "re-times unsent steps for %(num)d enrolments",
                    self.retimed,
                )
                due_now = ngettext(
                    "%(num)d has a step whose new time has passed",
                    "%(num)d have a step whose new time has passed",
                    self.due_now,
                )
                lines.append(f"  schedule: {retimed}; {due_now} (sent at the next tick)")
        lines += [f"  measure: {line}" for line in self.measurement]
        return "\n".join(lines)
