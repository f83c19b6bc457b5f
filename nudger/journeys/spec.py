"""The journey model: what a journey file may say, its defaults, and its rules.

This is the only home of a journey's defaults (send and invite times, due_after,
the digest time); the schedule and the tick read them from here.
"""

import hashlib
import json
import re
from datetime import datetime, time
from typing import Annotated, Any, Literal, NoReturn, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from nudger.text import CONTROL, control_character

Kind = Literal[
    "read", "discuss", "elearning", "experiment", "practice", "feedback",
    "reflect", "workshop", "video", "quiz", "assignment", "other",
]  # fmt: skip
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# Who an escalation tells, lowest level first.
Notify = Literal["manager", "skip_level", "admin"]
LEVELS: tuple[str, ...] = get_args(Notify)
# The level of an escalation event asking a learner's manager to confirm a step
# marked done (a step with `confirmed_by: manager`).
CONFIRM = "confirm"
KINDS: tuple[str, ...] = get_args(Kind)
DAYS: tuple[str, ...] = get_args(Day)

Loc = tuple[str | int, ...]


def _slug(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9-]+", value):
        raise ValueError("must use only lowercase letters, digits and hyphens")
    return value


def _clock(value: object) -> object:
    """Read "HH:MM" as a time; a time object passes, so python-mode dumps re-validate."""
    if isinstance(value, time) and value.second == value.microsecond == 0 and not value.tzinfo:
        return value
    match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value) if isinstance(value, str) else None
    if not match:
        raise ValueError('must be a 24-hour time HH:MM, like "09:00"')
    return time(int(match[1]), int(match[2]))


def _local_minute(value: object) -> object:
    """Read "YYYY-MM-DDTHH:MM" as a naive (learner-local) datetime."""
    if isinstance(value, datetime) and value.second == value.microsecond == 0:
        # PyYAML turns 2027-02-10T14:00:00Z into an aware datetime; the contract is local time.
        if value.tzinfo is None:
            return value
    elif isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", value):
        try:
            return datetime.strptime(value, "%Y-%m-%dT%H:%M")
        except ValueError:
            pass  # a date like 2027-02-30; reported below with the expected shape
    raise ValueError('must be a local date and time without a time zone, like "2027-02-10T14:00"')


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must be one line")
    if code := control_character(value):
        raise ValueError(f"must not contain control characters (found {code})")
    return value


def _prose(value: str) -> str:
    if code := control_character(value, "\t\n"):
        raise ValueError(f"must not contain control characters (found {code})")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or re.search(r"\s", value)
        or CONTROL.search(value)
    ):
        raise ValueError("must be an http:// or https:// URL")
    return value


Slug = Annotated[str, AfterValidator(_slug)]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_one_line)
]
Prose = Annotated[str, AfterValidator(_prose)]  # Markdown: lines and tabs allowed
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Clock = Annotated[
    time,
    BeforeValidator(_clock),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str, when_used="json"),
]
LocalMinute = Annotated[
    datetime,
    BeforeValidator(_local_minute),
    PlainSerializer(lambda d: d.strftime("%Y-%m-%dT%H:%M"), return_type=str, when_used="json"),
]


def _fail(errors: list[tuple[Loc, str]]) -> NoReturn:
    """Raise errors located below the field being validated, so each one keeps its own line."""
    raise ValidationError.from_exception_data(
        "JourneySpec",
        [
            InitErrorDetails(
                type=PydanticCustomError("journey", "{message}", {"message": message}),
                loc=loc,
                input=None,
            )
            for loc, message in errors
        ],
    )


class _Spec(BaseModel):
    """Base for journey parts: unknown keys are typos, and a spec never changes once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleSpec(_Spec):
    """When a journey's steps go out and when they fall due."""

    send_time: Clock = time(9, 0)
    invite_time: Clock = time(10, 0)
    days: list[Day] = Field(default_factory=lambda: list(DAYS[:5]), min_length=1)
    holidays: bool = True
    due_after: int = Field(2, ge=0)

    @field_validator("days")
    @classmethod
    def _days_are_unique(cls, days: list[str]) -> list[str]:
        repeats = [((i,), f"{d} is listed twice") for i, d in enumerate(days) if d in days[:i]]
        if repeats:
            _fail(repeats)
        return days


class StepSpec(_Spec):
    """One step of a journey: something the learner does on a given working day."""

    key: Slug
    day: int = Field(ge=0)
    kind: Kind
    title: Text
    minutes: int | None = Field(None, gt=0)
    link: HttpUrl | None = None
    body: Prose | None = None
    due_after: int | None = Field(None, ge=0)
    confirmed_by: Literal["manager"] | None = None
    at: LocalMinute | None = None
    _position: int = PrivateAttr(0)

    @property
    def position(self) -> int:
        """Return the step's index in the journey once sorted by day."""
        return self._position

    @model_validator(mode="after")
    def _fixed_events_have_a_length(self) -> "StepSpec":
        if self.at is not None and self.minutes is None:
            _fail([(("minutes",), "is required with `at`: it is the event's length")])
        return self


class ReminderSpec(_Spec):
    """Remind the learner this many working days after a step became overdue."""

    after: int = Field(ge=1)


class EscalationSpec(_Spec):
    """Tell someone, in their digest, about a step overdue by this many working days."""

    after: int = Field(ge=1)
    notify: Notify


class DigestSpec(_Spec):
    """How often, and when, escalation digests go out."""

    every: Literal["day", "week"] = "day"
    at: Clock = time(8, 0)
    on: Day = "mon"


def behaviour_key(text: str) -> str:
    """Return the key of a behaviour written as a plain string: its words, hyphenated."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    key = ""
    for word in words:
        if len(key) + len(word) + 1 > 60:  # keys stay readable in exports and URLs
            break
        key = f"{key}-{word}" if key else word
    return key or "behaviour"


class BehaviourSpec(_Spec):
    """One observable behaviour of the goal; `key` keeps its ratings across rewording."""

    key: Slug
    text: Text


def _behaviour(value: object) -> object:
    """Read a plain string as a behaviour keyed by its words (rewording it makes a new one)."""
    if isinstance(value, str) and value.strip():
        return {"key": behaviour_key(value), "text": value.strip(), "_plain": True}
    return value


class _GoalItem(BehaviourSpec):
    """A goal item as written: a mapping, or a plain string (remembered, for sync's wording)."""

    plain: bool = Field(False, alias="_plain", exclude=True)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_serializer(mode="wrap")
    def _as_written(self, handler: Any) -> Any:
        # A plain string stays one in the stored spec: its checksum is unchanged
        # for journeys written before behaviours had keys, and it stays "plain".
        return self.text if self.plain else handler(self)


GoalItem = Annotated[_GoalItem, BeforeValidator(_behaviour)]
Rater = Literal["learner", "manager"]
RATERS: tuple[str, ...] = get_args(Rater)
# The answers of the frequency scale, value 1 to 5; "no chance to observe" has no value.
SCALE: tuple[str, ...] = ("Never", "Rarely", "Sometimes", "Often", "Always")
# Working days a checkpoint stays open for answers after its check-in went out.
CHECKPOINT_OPEN_DAYS = 10


def _checkpoint(value: object) -> object:
    """Read a checkpoint: start, end, or N working days after the end (kept as text "N")."""
    if value in ("start", "end"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"[1-9]\d*", value):
        return value
    raise ValueError("must be start, end, or a number of working days after the end (1 or more)")


Checkpoint = Annotated[str, BeforeValidator(_checkpoint)]


def checkpoint_order(checkpoint: str) -> int:
    """Return where a checkpoint falls: start 0, end 1, N days after the end 1 + N."""
    fixed = {"start": 0, "end": 1}
    return fixed[checkpoint] if checkpoint in fixed else 1 + int(checkpoint)


class MeasureSpec(_Spec):
    """Who rates the goal's behaviours, and when."""

    raters: list[Rater] = Field(default_factory=lambda: list(RATERS), min_length=1)
    at: list[Checkpoint] = Field(default_factory=lambda: ["start", "end"], min_length=1)

    @field_validator("raters", "at")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        repeats = [((i,), f"{v} is listed twice") for i, v in enumerate(values) if v in values[:i]]
        if repeats:
            _fail(repeats)
        return values

    def checkpoints(self) -> list[str]:
        """Return the checkpoints in the order they fall."""
        return sorted(self.at, key=checkpoint_order)


class JourneySpec(_Spec):
    """A journey as written in its YAML file, validated and with steps sorted by day."""

    slug: Slug
    title: Text
    owner: EmailStr | None = None
    summary: Prose | None = None
    goal: list[GoalItem] = Field(min_length=1)
    measure: MeasureSpec | None = None
    share_manager_ratings: bool = False
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    steps: list[StepSpec] = Field(min_length=1)
    reminders: list[ReminderSpec] = []
    escalations: list[EscalationSpec] = []
    digest: DigestSpec = Field(default_factory=DigestSpec)

    @field_validator("steps")
    @classmethod
    def _sort_steps(cls, steps: list[StepSpec]) -> list[StepSpec]:
        first: dict[str, int] = {}
        repeats: list[tuple[Loc, str]] = []
        for i, step in enumerate(steps):
            if step.key in first:
                message = f"{step.key!r} is already the key of steps[{first[step.key]}]"
                repeats.append(((i, "key"), message))
            first.setdefault(step.key, i)
        if repeats:
            _fail(repeats)
        # sorted() is stable, so steps on the same day keep their order in the file.
        ordered = sorted(steps, key=lambda step: step.day)
        for position, step in enumerate(ordered):
            step._position = position
        return ordered

    @field_validator("goal")
    @classmethod
    def _behaviour_keys_are_unique(cls, goal: list[_GoalItem]) -> list[_GoalItem]:
        first: dict[str, int] = {}
        repeats: list[tuple[Loc, str]] = []
        for i, item in enumerate(goal):
            if item.key in first:
                how = "the key made from its words" if item.plain else "its key"
                message = f"{how}, {item.key!r}, is already the key of goal[{first[item.key]}]"
                repeats.append(((i,) if item.plain else (i, "key"), message))
            first.setdefault(item.key, i)
        if repeats:
            _fail(repeats)
        return goal

    @field_validator("reminders", "escalations")
    @classmethod
    def _thresholds_increase(cls, rules: list[Any]) -> list[Any]:
        errors: list[tuple[Loc, str]] = [
            ((i, "after"), f"must be greater than the previous one ({rules[i - 1].after})")
            for i in range(1, len(rules))
            if rules[i].after <= rules[i - 1].after
        ]
        if errors:
            _fail(errors)
        return rules

    def step(self, key: str) -> StepSpec:
        """Return the step with this key, or raise KeyError."""
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(key)

    def due_after_for(self, step: StepSpec) -> int:
        """Return the working days a step has before it is overdue."""
        return self.schedule.due_after if step.due_after is None else step.due_after

    def behaviours(self) -> list[BehaviourSpec]:
        """Return the goal's behaviours, each with its key, in the file's order."""
        return [BehaviourSpec(key=item.key, text=item.text) for item in self.goal]

    def weekday_numbers(self) -> list[int]:
        """Return the schedule's days as sorted weekday numbers, Monday=0."""
        return sorted(DAYS.index(day) for day in self.schedule.days)

    def checksum(self) -> str:
        """Return a stable hash of the normalised spec, to notice edits to its file."""
        dump = self.model_dump(mode="json")
        # Journeys that do not measure keep the checksum they had before `measure:` existed.
        if dump["measure"] is None and not dump["share_manager_ratings"]:
            del dump["measure"], dump["share_manager_ratings"]
        canonical = json.dumps(dump, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
