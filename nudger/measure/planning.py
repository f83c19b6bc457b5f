"""Write each enrolment's check-ins ahead, so that the tick finds them by an index.

An enrolment is planned once (new enrolments, and again after a journey edit
changed who rates or when): one row per rater and checkpoint, timed in the
rater's zone. Planning never sends anything; `nudger.measure.due` does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import false, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, select

from nudger.bulk import among, insert_ignoring
from nudger.calendar import local_date
from nudger.measure.checkpoints import Measure, checkpoint_at, checkpoint_date, closes_at
from nudger.models import Checkin, Enrolment, Journey, Person
from nudger.schedule import JourneyPlan

CHUNK = 1000


def plan_checkins(
    session: Session,
    now: datetime,
    plan_of: Callable[[int], JourneyPlan],
    default_country: str = "",
) -> int:
    """Plan the check-ins of every enrolment not planned yet; return how many rows were written."""
    # The partial index holds only unplanned enrolments: this costs what is new.
    # `= false`, as the index's condition is written: `IS false` matches no index, and
    # would read every enrolment on every tick.
    unplanned = Enrolment.checkins_planned == false()
    ids = sorted(session.exec(select(Enrolment.id).where(unplanned)))
    written = 0
    measures: dict[int, Measure | None] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        rows = []
        manager = aliased(Person)
        query = (
            select(
                Enrolment.id,
                Enrolment.journey_id,
                Enrolment.status,
                Enrolment.start_date,
                Enrolment.shift_days,
                Person.timezone,
                Person.country,
                manager.timezone,
            )
            .join(Person, Person.id == Enrolment.person_id)
            .outerjoin(manager, manager.id == Person.manager_id)
            .where(among(session, Enrolment.id, chunk))
        )
        for e_id, j_id, status, start_date, shift, tz, country, manager_tz in session.exec(query):
            if j_id not in measures:
                measures[j_id] = Measure.of(session.get(Journey, j_id))
            measure = measures[j_id]
            if measure is None or status == "withdrawn":
                continue
            plan = plan_of(j_id)
            cal = plan.country_calendar(country or default_country)
            for checkpoint in measure.checkpoints:
                day = checkpoint_date(plan, cal, start_date, shift, checkpoint)
                # A status quo asked after the start would not be one.
                if checkpoint == "start" and local_date(now, tz) > day:
                    continue
                if closes_at(plan, cal, day, tz) <= now:
                    continue
                for rater in measure.raters:
                    zone = (manager_tz or tz) if rater == "manager" else tz
                    rows.append(
                        {
                            "enrolment_id": e_id,
                            "journey_id": j_id,
                            "rater": rater,
                            "checkpoint": checkpoint,
                            "state": "planned",
                            "send_at": checkpoint_at(plan, day, zone),
                        }
                    )
        # A check-in already written (sent, or planned by a tick beside this one) stays.
        written += len(
            insert_ignoring(
                session,
                Checkin.__table__,
                rows,
                ("enrolment_id", "rater", "checkpoint"),
                ("id",),
            )
        )
        session.execute(
            update(Enrolment)
            .where(among(session, Enrolment.id, chunk))
            .values(checkins_planned=True)
        )
    return written


def replan_journey(session: Session, journey_id: int) -> int:
    """Drop a journey's unsent check-ins and plan its enrolments again; return how many dropped.

    For an edit that changes who rates or when: check-ins already sent stay,
    the next tick re-times the rest.
    """
    dropped = session.execute(
        Checkin.__table__.delete().where(
            Checkin.journey_id == journey_id, Checkin.state == "planned"
        )
    ).rowcount
    session.execute(
        update(Enrolment)
        .where(Enrolment.journey_id == journey_id, Enrolment.status != "withdrawn")
        .values(checkins_planned=False)
    )
    return dropped or 0
