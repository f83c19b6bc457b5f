"""The tables.

Enrolment-step rows are created when a step is *sent*, not at import: a
journey's future is derived from its definition and the enrolment's start,
so importing 100,000 learners writes 100,000 enrolments, not a million rows.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Column,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
    event,
    false,
    text,
)
from sqlmodel import Field, SQLModel

from nudger.db import UTCDateTime, current_txid, utcnow


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


# An erased person's address is a placeholder under this reserved domain (RFC 6761):
# unique like any address, and no mail is ever sent there.
PLACEHOLDER_DOMAIN = "invalid"


def is_placeholder_address(email: str) -> bool:
    """True for an address under the reserved `.invalid` domain."""
    domain = email.rpartition("@")[2].lower()
    return domain == PLACEHOLDER_DOMAIN or domain.endswith("." + PLACEHOLDER_DOMAIN)


# Person.digest_every of someone who stopped their digest: what would have come
# to them climbs to the next person up (nudger.tick.followups.recipients).
NO_DIGEST = "never"


def _trigram(name: str, column: str) -> Index:
    """A PostgreSQL trigram index: `LIKE` and `ILIKE '%text%'` searches read it, not every row.

    SQLite has none (it scans; its installs are small), so the index exists on
    PostgreSQL only; the pg_trgm extension is created with the tables.
    """
    return Index(
        name, column, postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"}
    ).ddl_if(dialect="postgresql")


event.listen(
    SQLModel.metadata,
    "before_create",
    DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm").execute_if(dialect="postgresql"),
)


class Person(SQLModel, table=True):
    """A learner, a manager, or both: anyone Nudger emails."""

    # The console's search matches any part of an address or a name.
    __table_args__ = (
        _trigram("ix_person_email_trgm", "email"),
        _trigram("ix_person_name_trgm", "name"),
        # The few whose mail bounced, counted on every dashboard view.
        Index(
            "ix_person_undeliverable",
            "undeliverable_at",
            sqlite_where=text("undeliverable_at IS NOT NULL"),
            postgresql_where=text("undeliverable_at IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)  # stored lower-case
    name: str = Field(default="", max_length=200)
    manager_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    timezone: str = Field(default="UTC", max_length=64)
    country: str = Field(default="", max_length=8)
    # A manager's own choice: day, week or NO_DIGEST (None: the journeys' setting).
    digest_every: str | None = Field(default=None, max_length=8)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    # Set when their personal data was erased (nudger.privacy); the row stays for the counts.
    erased_at: datetime | None = _ts(default=None)
    # Mail to this address bounced for good (nudger.inbound): nothing more is sent to it.
    undeliverable_at: datetime | None = _ts(default=None)
    undeliverable_reason: str | None = Field(default=None, max_length=500)
    # The last automatic "out of office" answer that came back from them.
    out_of_office_at: datetime | None = _ts(default=None)


class Journey(SQLModel, table=True):
    """A journey as last synced from its file; `spec` holds the validated definition."""

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=100, unique=True)
    title: str = Field(max_length=300)
    owner: str | None = Field(default=None, max_length=320)
    spec: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    checksum: str = Field(max_length=64)
    version: int = 1
    source: str = Field(default="", max_length=500)
    synced_at: datetime = _ts(default_factory=utcnow)


class Step(SQLModel, table=True):
    """One step of a journey; `key` is stable across edits of the file."""

    __table_args__ = (UniqueConstraint("journey_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id", index=True)
    key: str = Field(max_length=100)
    position: int  # 0-based order in the journey after sorting by day
    day: int
    kind: str = Field(max_length=20)
    title: str = Field(max_length=300)
    minutes: int | None = None
    link: str | None = Field(default=None, max_length=2000)
    body: str | None = Field(default=None, sa_column=Column(Text))
    due_after: int | None = None
    confirmed_by: str | None = Field(default=None, max_length=20)
    at: str | None = Field(default=None, max_length=16)  # fixed learner-local "YYYY-MM-DDTHH:MM"
    removed: bool = False


class ImportBatch(SQLModel, table=True):
    """One committed CSV import, for the audit trail and the admin console."""

    id: int | None = Field(default=None, primary_key=True)
    filename: str = Field(default="", max_length=500)
    checksum: str = Field(default="", max_length=64)
    actor: str = Field(default="cli", max_length=320)
    rows: int = 0
    people_created: int = 0
    people_updated: int = 0
    enrolments_created: int = 0
    created_at: datetime = _ts(default_factory=utcnow)


class Enrolment(SQLModel, table=True):
    """A person on a journey; `next_action_at` is when the tick must look at it next."""

    __table_args__ = (
        UniqueConstraint("person_id", "journey_id"),
        Index("ix_enrolment_due", "next_action_at"),
        # Status counts per journey for the admin dashboard, from the index alone.
        Index("ix_enrolment_journey_status", "journey_id", "status"),
        # Enrolments whose check-ins are not planned yet (new ones, or after a journey
        # edit changed when its behaviours are measured): the tick reads only these.
        Index(
            "ix_enrolment_checkins_unplanned",
            "id",
            sqlite_where=text("checkins_planned = 0"),
            postgresql_where=text("NOT checkins_planned"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    journey_id: int = Field(foreign_key="journey.id", index=True)
    status: str = Field(default="active", max_length=12)  # active|paused|withdrawn|completed
    start_date: date
    shift_days: int = 0  # working days added by pauses
    next_action_at: datetime | None = _ts(default=None)
    paused_at: datetime | None = _ts(default=None)
    reminders_muted: bool = False
    checkins_planned: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    import_batch_id: int | None = Field(default=None, foreign_key="importbatch.id")
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class EnrolmentStep(SQLModel, table=True):
    """A step sent to a learner, and what became of it."""

    __table_args__ = (
        UniqueConstraint("enrolment_id", "step_id"),
        # The admin console's aggregates (funnel, stalls, completions per day): index-only.
        Index("ix_enrolmentstep_step_status", "step_id", "status", "done_at", "due_at", "sent_at"),
        # Open steps only (sent, not done): "who is behind" costs what is open, not all history.
        # `status` is listed too so that SQLite reads the index alone.
        Index(
            "ix_enrolmentstep_open",
            "enrolment_id",
            "due_at",
            "escalation_level",
            "status",
            sqlite_where=text("status = 'sent'"),
            postgresql_where=text("status = 'sent'"),
        ),
        # The notes a step's later learners may read: only the few that were offered are
        # indexed, newest first per step, so a done page never reads the step's whole history.
        Index(
            "ix_enrolmentstep_shared_notes",
            "step_id",
            "done_at",
            sqlite_where=text("note_for_others = 1"),
            postgresql_where=text("note_for_others"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    # No index of their own: (enrolment_id, step_id) is unique and ix_enrolmentstep_step_status
    # starts with step_id; a third and fourth index would be written for every step sent.
    enrolment_id: int = Field(foreign_key="enrolment.id")
    step_id: int = Field(foreign_key="step.id")
    status: str = Field(default="sent", max_length=12)  # sent|done|cancelled
    sent_at: datetime | None = _ts(default=None)  # None: closed unsent (skipped by a journey edit)
    due_at: datetime | None = _ts(default=None)
    done_at: datetime | None = _ts(default=None)
    note: str | None = Field(default=None, sa_column=Column(Text))
    note_shared: bool = True  # with the learner's manager
    # Offered to the people who do this step later (without a name); off unless ticked.
    note_for_others: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    note_hidden_at: datetime | None = _ts(default=None)  # an admin hid the offered note
    awaiting_confirmation: bool = False  # learner says done, manager has not confirmed
    confirmed_by_id: int | None = Field(default=None, foreign_key="person.id")
    invite_sequence: int = 0
    invite_start: datetime | None = _ts(default=None)
    reminders_sent: int = 0
    escalation_level: int = 0
    snoozed_until: datetime | None = _ts(default=None)


BOUNCED = "(state = 'failed' AND last_error LIKE '5__ %') OR state = 'bounced'"


class Outbox(SQLModel, table=True):
    """One row per message; the dedupe key makes deciding twice harmless."""

    __table_args__ = (
        Index("ix_outbox_state_next", "state", "next_attempt_at"),
        _trigram("ix_outbox_to_email_trgm", "to_email"),  # the ledger's recipient search
        # The ledger's filters, newest first, each read from its own index (keyset pages):
        # a state or a kind, and failures split the way the ledger shows them.
        Index("ix_outbox_state_id", "state", "id"),
        Index("ix_outbox_kind_id", "kind", "id"),
        # Retention deletes the oldest rows first, however long the ledger.
        Index("ix_outbox_created", "created_at"),
        # Bounced: refused for good when sent, or a bounce came back later (nudger.insights.ledger
        # asks for exactly this, so one backward walk of this index gives the newest page).
        Index(
            "ix_outbox_bounced",
            "id",
            sqlite_where=text(BOUNCED),
            postgresql_where=text(BOUNCED),
        ),
        Index(
            "ix_outbox_failed",
            "id",
            sqlite_where=text("state = 'failed' AND last_error NOT LIKE '5__ %'"),
            postgresql_where=text("state = 'failed' AND last_error NOT LIKE '5__ %'"),
        ),
        # Rows whose subject retention has not pruned yet, oldest first: the
        # hourly prune reads only what it will change, however long the ledger.
        Index(
            "ix_outbox_retained",
            "created_at",
            sqlite_where=text("subject IS NOT NULL"),
            postgresql_where=text("subject IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200, unique=True)
    kind: str = Field(max_length=20)  # step|reminder|digest|invite-update|invite-cancel|test
    to_email: str = Field(max_length=320, index=True)
    # Ids, not foreign keys: the ledger is history, written from rows its transaction has just
    # read, and people and enrolments are never deleted (erasure blanks them). A key checked
    # and locked per row was a third of the cost of writing forty thousand digests at once.
    person_id: int | None = Field(default=None, index=True)
    enrolment_id: int | None = Field(default=None, index=True)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # pending|sending|sent|failed|cancelled|bounced (a bounce came back)|suppressed (undeliverable)
    state: str = Field(default="pending", max_length=10)
    attempts: int = 0
    next_attempt_at: datetime = _ts(default_factory=utcnow)
    lease_until: datetime | None = _ts(default=None)
    enqueued_at: datetime | None = _ts(default=None)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    message_id: str | None = Field(default=None, max_length=300)
    subject: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts(default_factory=utcnow)
    sent_at: datetime | None = _ts(default=None)


class EscalationEvent(SQLModel, table=True):
    """A step crossed an escalation threshold: who must hear about it."""

    __table_args__ = (
        # With no journey owner, `admin` goes to every admin user: one row each.
        UniqueConstraint("enrolment_step_id", "level", "recipient_email"),
        Index("ix_escalation_open", "recipient_email", "resolved_at"),
        # Digests written before DigestQueue, named by their events: retention keeps those.
        Index(
            "ix_escalation_digest",
            "digest_outbox_id",
            sqlite_where=text("digest_outbox_id IS NOT NULL"),
            postgresql_where=text("digest_outbox_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    enrolment_step_id: int = Field(foreign_key="enrolmentstep.id")  # the unique key's first
    enrolment_id: int = Field(foreign_key="enrolment.id", index=True)
    level: str = Field(max_length=12)  # manager|skip_level|admin|confirm
    recipient_email: str = Field(max_length=320)
    created_at: datetime = _ts(default_factory=utcnow)
    resolved_at: datetime | None = _ts(default=None)
    # The digest that carried it, for digests written before DigestQueue: a digest now lists
    # the events it carries in its payload (`event_ids`).
    digest_outbox_id: int | None = Field(default=None, foreign_key="outbox.id")


class DigestQueue(SQLModel, table=True):
    """An open escalation event that no digest has carried yet (nudger.tick.digests).

    A digest carrying an event deletes its row here. Marking the event itself
    rewrote a history row and every one of its indexes per event: at a million
    learners one digest tick carries a quarter of a million of them.
    """

    event_id: int = Field(primary_key=True, foreign_key="escalationevent.id")


class AdminUser(SQLModel, table=True):
    """Someone who may use the admin console."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    password_hash: str = Field(max_length=200)
    totp_secret: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)
    last_login_at: datetime | None = _ts(default=None)


class AdminSession(SQLModel, table=True):
    """A signed-in console. The cookie holds a random token whose hash is kept here,
    so ending the row ends every copy of the cookie."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)  # sha256 hex: a leaked table opens nothing
    admin_id: int = Field(foreign_key="adminuser.id", index=True)
    ip: str = Field(default="", max_length=64)
    created_at: datetime = _ts()
    last_seen_at: datetime = _ts()
    expires_at: datetime = _ts()
    revoked_at: datetime | None = _ts(default=None)


class LoginCount(SQLModel, table=True):
    """Sign-in attempts of one IP or email in its window, counted here only when Redis is down."""

    key: str = Field(primary_key=True, max_length=340)  # "ip:<address>" or "email:<address>"
    window_start: datetime = _ts()
    attempts: int = 0


class AuditLog(SQLModel, table=True):
    """Who changed what, and why a message went out."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(default_factory=utcnow, index=True)
    actor: str = Field(max_length=320)  # an admin's email, "cli", "tick", "learner:<id>"
    action: str = Field(max_length=60, index=True)
    subject_type: str = Field(default="", max_length=40)
    subject_id: int | None = Field(default=None, index=True)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class LinkHit(SQLModel, table=True):
    """A request on an emailed link; scanners show up here, never as engagement."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(default_factory=utcnow, index=True)  # retention prunes oldest first
    purpose: str = Field(max_length=12)
    subject_id: int = Field(index=True)
    method: str = Field(max_length=8)
    user_agent: str = Field(default="", max_length=500)
    ip: str = Field(default="", max_length=64)


class DashboardSnapshot(SQLModel, table=True):
    """The dashboard's figures as computed at one time (nudger.insights.snapshots)."""

    id: int | None = Field(default=None, primary_key=True)
    computed_at: datetime = _ts()
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CapturedMail(SQLModel, table=True):
    """A message kept by the `outbox:` transport, shown at /outbox."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(default_factory=utcnow)
    to_email: str = Field(max_length=320)
    subject: str = Field(default="", max_length=500)
    kind: str = Field(default="", max_length=20)
    message_id: str = Field(default="", max_length=300)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TickRun(SQLModel, table=True):
    """One run of the tick, for clock health in the admin console."""

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = _ts(default_factory=utcnow, index=True)
    now: datetime = _ts()
    duration_ms: int = 0
    counts: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Checkin(SQLModel, table=True):
    """One rater's check-in at one checkpoint of an enrolment: planned, then sent, then answered.

    Rows are planned ahead (a few per enrolment) so that the tick finds the
    check-ins due by an index on `send_at`, and reminders by `remind_at`.
    """

    __table_args__ = (
        UniqueConstraint("enrolment_id", "rater", "checkpoint"),
        Index(
            "ix_checkin_due",
            "send_at",
            sqlite_where=text("state = 'planned'"),
            postgresql_where=text("state = 'planned'"),
        ),
        Index(
            "ix_checkin_remind",
            "remind_at",
            sqlite_where=text("remind_at IS NOT NULL"),
            postgresql_where=text("remind_at IS NOT NULL"),
        ),
        # A manager's unanswered check-ins waiting for their next digest: only those.
        Index(
            "ix_checkin_digest",
            "digest_at",
            sqlite_where=text("digest_at IS NOT NULL"),
            postgresql_where=text("digest_at IS NOT NULL"),
        ),
        # Response rates per journey and checkpoint, from the index alone.
        Index("ix_checkin_rates", "journey_id", "checkpoint", "rater", "state", "answered_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    enrolment_id: int = Field(foreign_key="enrolment.id", index=True)
    journey_id: int = Field(foreign_key="journey.id")
    rater: str = Field(max_length=8)  # learner|manager
    checkpoint: str = Field(max_length=8)  # start|end|<working days after the end>
    # planned|sent|skipped (paused, withdrawn, closed or person erased before it went)|no-manager
    state: str = Field(default="planned", max_length=10)
    send_at: datetime = _ts()
    rater_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    sent_at: datetime | None = _ts(default=None)
    closes_at: datetime | None = _ts(default=None)
    remind_at: datetime | None = _ts(default=None)  # cleared once reminded or answered
    reminded_at: datetime | None = _ts(default=None)
    # Since when a manager's unanswered check-in waits for their next digest (their one
    # follow-up); cleared when a digest carries it or it is answered.
    digest_at: datetime | None = _ts(default=None)
    answered_at: datetime | None = _ts(default=None)


class Rating(SQLModel, table=True):
    """One answer: how often a rater saw a behaviour at a checkpoint (None: could not observe)."""

    __table_args__ = (
        UniqueConstraint("checkin_id", "behaviour"),
        # The panel's distributions and pairs per journey, behaviour, rater and checkpoint.
        Index(
            "ix_rating_panel",
            "journey_id",
            "behaviour",
            "rater",
            "checkpoint_order",
            "enrolment_id",
            "value",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    checkin_id: int = Field(foreign_key="checkin.id")
    enrolment_id: int = Field(foreign_key="enrolment.id", index=True)
    journey_id: int = Field(foreign_key="journey.id")
    behaviour: str = Field(max_length=100)  # the behaviour's key in the journey's goal
    rater: str = Field(max_length=8)
    checkpoint: str = Field(max_length=8)
    checkpoint_order: int  # start 0, end 1, N working days after the end 1 + N
    value: int | None = None  # 1 Never .. 5 Always
    recorded_at: datetime = _ts(default_factory=utcnow)


class RatingSummary(SQLModel, table=True):
    """Matched pairs of one behaviour and kind of rater, kept as ratings are saved.

    The panel and `nudger ratings` read these few rows instead of summing
    millions of ratings; `nudger.measure.results` proves the two agree.
    """

    __table_args__ = (UniqueConstraint("journey_id", "behaviour", "rater"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id")
    behaviour: str = Field(max_length=100)
    rater: str = Field(max_length=8)
    pairs: int = 0
    start_sum: int = 0
    latest_sum: int = 0
    improved: int = 0


class Event(SQLModel, table=True):
    """Something that happened to an enrolment, in the order it was written: the id is the cursor.

    Written by `nudger.events.record` in the transaction of the change itself,
    so an event exists exactly when its change does. `data` holds ids, keys and
    times, never a person's name or address: erasing a person leaves nothing here.
    """

    __table_args__ = (
        # Events not yet fanned out to webhook endpoints and the LRS (nudger.webhooks.dispatch).
        Index(
            "ix_event_undispatched",
            "id",
            sqlite_where=text("dispatched = 0"),
            postgresql_where=text("NOT dispatched"),
        ),
        Index("ix_event_txid", "txid", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # The writing transaction (PostgreSQL; NULL on SQLite): the feed reads in (txid, id)
    # order, up to the oldest transaction still running (nudger.events.after).
    txid: int | None = Field(
        default=None, sa_column=Column(BigInteger, server_default=current_txid(), nullable=True)
    )
    type: str = Field(max_length=40, index=True)  # "step.completed", see nudger.events.TYPES
    occurred_at: datetime = _ts()
    # An id, not a foreign key, as the ledger's (Outbox): a log written in bulk by the tick.
    enrolment_id: int | None = Field(default=None, index=True)
    data: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Set for an event that may be decided more than once (a step found overdue): written once.
    key: str | None = Field(default=None, max_length=200, unique=True)
    dispatched: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class WebhookEndpoint(SQLModel, table=True):
    """A URL that receives the events it subscribed to, signed per Standard Webhooks."""

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    # "whsec_" + base64: kept as it is, since signing needs it (shown once, when added).
    secret: str = Field(max_length=100)
    events: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    description: str = Field(default="", max_length=200)
    enabled: bool = True
    created_at: datetime = _ts(default_factory=utcnow)
    # Set at the first failed attempt after a success; cleared by a success.
    failing_since: datetime | None = _ts(default=None)
    disabled_at: datetime | None = _ts(default=None)
    disabled_reason: str = Field(default="", max_length=300)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint (or for the LRS: `endpoint_id` None): the delivery outbox."""

    __table_args__ = (Index("ix_webhookdelivery_state_next", "state", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    # The `webhook-id` header (or the xAPI statement id): the same on every attempt.
    message_id: str = Field(max_length=64, unique=True)
    event_id: int = Field(foreign_key="event.id", index=True)
    endpoint_id: int | None = Field(default=None, foreign_key="webhookendpoint.id", index=True)
    target: str = Field(default="webhook", max_length=8)  # webhook|xapi
    state: str = Field(default="pending", max_length=10)  # pending|sending|delivered|failed
    attempts: int = 0
    next_attempt_at: datetime = _ts(default_factory=utcnow)
    lease_until: datetime | None = _ts(default=None)
    last_status: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts(default_factory=utcnow)
    delivered_at: datetime | None = _ts(default=None)


class WebhookAttempt(SQLModel, table=True):
    """One request of a delivery, for the console's delivery log."""

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhookdelivery.id", index=True)
    endpoint_id: int | None = Field(default=None, foreign_key="webhookendpoint.id", index=True)
    attempt: int
    at: datetime = _ts()
    status: int | None = None  # the HTTP status; None: no answer (refused, timed out)
    error: str = Field(default="", max_length=500)
    duration_ms: int = 0


class RatingGap(SQLModel, table=True):
    """How many people, rated by both themselves and their manager on one behaviour at one
    checkpoint, had each difference (self minus manager), kept as ratings are saved."""

    __table_args__ = (
        UniqueConstraint("journey_id", "behaviour", "checkpoint_order", "difference"),
    )

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id")
    behaviour: str = Field(max_length=100)
    checkpoint_order: int
    difference: int  # -4 .. 4
    count: int = 0


class RatingCount(SQLModel, table=True):
    """How many answered each value (0: no chance to observe) per behaviour, rater, checkpoint."""

    __table_args__ = (
        UniqueConstraint("journey_id", "behaviour", "rater", "checkpoint_order", "value"),
    )

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id")
    behaviour: str = Field(max_length=100)
    rater: str = Field(max_length=8)
    checkpoint_order: int
    value: int
    count: int = 0


class InboundMessage(SQLModel, table=True):
    """One message received at the inbound domain, stored before it is acknowledged.

    `message_key` (the Message-ID, or a digest of the bytes when there is none)
    makes a second delivery of the same message a no-op.
    """

    __table_args__ = (Index("ix_inboundmessage_state", "state", "received_at"),)

    id: int | None = Field(default=None, primary_key=True)
    message_key: str = Field(max_length=300, unique=True)
    received_at: datetime = _ts(default_factory=utcnow, index=True)
    via: str = Field(default="smtp", max_length=8)  # smtp|http
    envelope_from: str = Field(default="", max_length=320)
    recipient: str = Field(default="", max_length=320)  # the address it was delivered to
    from_email: str = Field(default="", max_length=320)
    subject: str = Field(default="", max_length=500)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: str = Field(default="received", max_length=10)  # received|done
    kind: str = Field(default="", max_length=12)  # reply|bounce|auto-reply|unknown
    trusted: bool = False
    outcome: str | None = Field(default=None, sa_column=Column(Text))
    status: str = Field(default="", max_length=12)  # a bounce's status code, e.g. 5.1.1
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id", index=True)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    processed_at: datetime | None = _ts(default=None)


class ApiToken(SQLModel, table=True):
    """A bearer token for /api/v1. Only its SHA-256 is kept: the token is shown once."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)  # sha256 hex of the whole token
    prefix: str = Field(max_length=16)  # the first characters, to tell tokens apart in lists
    scope: str = Field(default="read", max_length=8)  # read|write (write includes read)
    created_by: str = Field(default="cli", max_length=320)
    created_at: datetime = _ts(default_factory=utcnow)
    last_used_at: datetime | None = _ts(default=None)
    revoked_at: datetime | None = _ts(default=None)
