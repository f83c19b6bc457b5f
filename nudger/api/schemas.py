"""The API's requests and answers as pydantic models: the OpenAPI document is built from these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nudger.events import CURSOR_PATTERN


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemError(_Out):
    """A problem with one item of a request: its index (from 0), field and value, and why."""

    item: int | None = Field(description="index in `items`, from 0; null: the whole request")
    field: str
    value: str
    message: str


class Problem(_Out):
    """An error, as RFC 9457 problem details (application/problem+json)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[ItemError] | None = Field(
        default=None, description="per-item errors of a rejected request"
    )


# --- journeys -------------------------------------------------------------------


class StepOut(_Out):
    key: str
    position: int
    day: int
    kind: str
    title: str
    minutes: int | None
    link: str | None
    due_after: int | None
    confirmed_by: str | None
    removed: bool


class BehaviourOut(_Out):
    key: str
    text: str


class JourneySummary(_Out):
    slug: str
    title: str
    owner: str | None
    version: int
    steps: int = Field(description="live steps (removed ones are not counted)")
    synced_at: datetime


class JourneyList(_Out):
    items: list[JourneySummary]


class JourneyDetail(_Out):
    slug: str
    title: str
    owner: str | None
    version: int
    synced_at: datetime
    summary: str | None
    steps: list[StepOut]
    behaviours: list[BehaviourOut]


class JourneyPath(BaseModel):
    slug: str = Field(max_length=100)


# --- enrolments -------------------------------------------------------------------


class EnrolmentQuery(BaseModel):
    """Filters and the page wanted; `cursor` is `next_cursor` of the page before."""

    model_config = ConfigDict(extra="forbid")

    journey: str | None = Field(default=None, max_length=100, description="a journey's slug")
    status: Literal["active", "paused", "completed", "withdrawn"] | None = None
    manager: str | None = Field(default=None, max_length=320, description="the manager's email")
    behind: Literal["yes", "escalated", "no"] | None = Field(
        default=None, description="yes: a step overdue; escalated: told to a manager; no: on track"
    )
    cursor: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="`next_cursor` of the page before"
    )
    limit: int = Field(default=50, ge=1, le=200)


class EnrolmentSummary(_Out):
    id: int
    email: str
    name: str
    journey: str
    status: Literal["active", "paused", "completed", "withdrawn"]
    start_date: date
    manager_email: str | None
    steps_done: int
    steps_total: int
    steps_overdue: int
    escalated: bool


class EnrolmentPage(_Out):
    items: list[EnrolmentSummary]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page; null: last")


class EnrolmentStepOut(_Out):
    key: str
    title: str
    status: Literal["scheduled", "sent", "overdue", "done", "cancelled"]
    sent_at: datetime | None
    due_at: datetime | None
    done_at: datetime | None
    awaiting_confirmation: bool


class RatingOut(_Out):
    behaviour: str
    rater: str
    checkpoint: str
    value: int | None = Field(description="1 Never .. 5 Always; null: no chance to observe")
    recorded_at: datetime


class EmailOut(_Out):
    id: int
    kind: str
    state: str
    subject: str | None
    created_at: datetime
    sent_at: datetime | None


class EnrolmentDetail(EnrolmentSummary):
    steps: list[EnrolmentStepOut]
    ratings: list[RatingOut]
    emails: list[EmailOut]


# --- writes -----------------------------------------------------------------------


class EnrolItem(BaseModel):
    """One learner to create or update and enrol: the columns of the learner CSV."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    name: str = Field(default="", max_length=320)
    first_name: str = Field(default="", max_length=320)
    last_name: str = Field(default="", max_length=320)
    manager_email: str = Field(default="", max_length=320)
    manager_name: str = Field(default="", max_length=320)
    journey: str = Field(min_length=1, max_length=100, description="a journey's slug")
    start_date: str = Field(default="", max_length=20, description="YYYY-MM-DD")
    timezone: str = Field(default="", max_length=64, description="IANA, e.g. Europe/London")
    country: str = Field(default="", max_length=8, description="ISO 3166, e.g. GB")


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[EnrolItem] = Field(min_length=1, max_length=1000)


class Enrolled(_Out):
    item: int
    id: int
    email: str
    journey: str
    status: str
    start_date: date


class EnrolResult(_Out):
    people_created: int
    people_updated: int
    enrolments_created: int
    unchanged: int
    enrolments: list[Enrolled]
    warnings: list[ItemError]


class EnrolmentPath(BaseModel):
    enrolment_id: int = Field(ge=1, le=2**31 - 1)


class StepPath(BaseModel):
    enrolment_id: int = Field(ge=1, le=2**31 - 1)
    key: str = Field(max_length=100)


class Completed(_Out):
    enrolment_id: int
    key: str
    status: Literal["done", "awaiting_confirmation"]
    already: bool = Field(description="true: it was done before this request; nothing changed")
    done_at: datetime | None


class Changed(_Out):
    id: int
    status: str
    changed: bool = Field(description="false: it was already so; nothing changed")


# --- the event feed ---------------------------------------------------------------

EventType = Literal[
    "enrolment.created", "step.sent", "step.completed", "step.overdue", "escalation.raised",
    "enrolment.completed", "rating.recorded", "email.bounced",
]  # fmt: skip


class EventQuery(BaseModel):
    """Events after the cursor `after` (0: from the start), oldest first."""

    model_config = ConfigDict(extra="forbid")

    after: str = Field(
        default="0", pattern=CURSOR_PATTERN, max_length=30,
        description="the `next_cursor` (or an item's `cursor`) you read up to; 0: from the start",
    )  # fmt: skip
    type: EventType | None = Field(default=None, description="only events of this type")
    limit: int = Field(default=100, ge=1, le=1000)


class EventOut(_Out):
    id: int
    cursor: str = Field(description="pass as `after` to read on from this event")
    type: str
    occurred_at: datetime
    enrolment_id: int | None
    data: dict


class EventPage(_Out):
    items: list[EventOut]
    next_cursor: str = Field(description="pass as `after` next time (the same when none came)")
