"""Where people started and where they are now, on /me and /team."""

from __future__ import annotations

import re

from sqlmodel import select

from nudger import tokens
from nudger.models import Enrolment, Person
from tests.measure.kit import utc
from tests.measure.test_results import answered_journey
from tests.pagekit import app_for

NOW = utc(2027, 3, 12, 12)


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def test_me_shows_own_start_and_latest(session, settings):
    answered_journey(session, settings)
    enrolment = session.exec(select(Enrolment).order_by(Enrolment.id)).first()
    client = app_for(settings, NOW).test_client()
    page = text(client.get("/me/" + tokens.make_token(settings, "me", enrolment.id, NOW)))
    assert "Where you started, and where you are now" in page
    # The first learner answered Never at the start and Sometimes at the end.
    assert "Asks open questions before suggesting Never Sometimes" in page
    assert "Manager: start" not in page  # the journey does not share the manager's ratings


def test_me_shows_the_managers_ratings_when_the_journey_shares_them(session, settings):
    journey = answered_journey(session, settings)
    journey.spec = {**journey.spec, "share_manager_ratings": True}
    session.add(journey)
    session.commit()
    enrolment = session.exec(select(Enrolment).order_by(Enrolment.id)).first()
    client = app_for(settings, NOW).test_client()
    page = text(client.get("/me/" + tokens.make_token(settings, "me", enrolment.id, NOW)))
    assert "Asks open questions before suggesting Never Sometimes Rarely Sometimes" in page


def test_team_shows_each_reports_start_and_latest_to_their_manager_only(session, settings):
    answered_journey(session, settings)
    boss = session.exec(select(Person).where(Person.email == "boss@example.com")).one()
    client = app_for(settings, NOW).test_client()
    page = text(client.get("/team/" + tokens.make_token(settings, "team", boss.id, NOW)))
    assert "Behaviours: where they started" in page
    assert page.count("Asks open questions before suggesting Rarely Sometimes") == 6
    other = Person(email="other@example.com", name="Other Boss")
    session.add(other)
    session.commit()
    page = text(client.get("/team/" + tokens.make_token(settings, "team", other.id, NOW)))
    assert "Behaviours: where they started" not in page
