"""The check-in page: one click opens it with the answer chosen; only Save records answers."""

from __future__ import annotations

import re
from datetime import date, timedelta
from email import policy
from email.parser import BytesParser
from urllib.parse import urlsplit

from sqlmodel import select

from nudger import tokens
from nudger.mail.compose import compose
from nudger.models import AuditLog, Outbox, Rating
from tests.factories import make_enrolment, make_person
from tests.measure.kit import checkins, make_measured_journey, run, utc
from tests.pagekit import app_for, csrf_token

START = date(2027, 3, 1)
SENT = utc(2027, 3, 1, 9)
KEYS = ["asks-open-questions", "opens-1-1s-with-a-question-about-the-person-s-goal"]


def sent_checkins(session, settings):
    journey = make_measured_journey(session)
    boss = make_person(session, "boss@example.com", "Grace Hopper")
    ada = make_person(session, "ada@example.com", "Ada Lovelace", manager=boss)
    dan = make_person(session, "dan@example.com", "Dan Brown", manager=boss)
    make_enrolment(session, ada, journey, START)
    make_enrolment(session, dan, journey, START)
    run(session, settings, SENT)
    return {(c.enrolment_id, c.rater): c for c in checkins(session) if c.checkpoint == "start"}


def ratings(session) -> list[tuple[str, str, int | None]]:
    session.expire_all()
    rows = session.exec(select(Rating).order_by(Rating.rater, Rating.behaviour))
    return [(r.rater, r.behaviour, r.value) for r in rows]


def page_url(settings, checkin, **query) -> str:
    path = "/checkin/" + tokens.make_token(settings, "checkin", checkin.id, SENT)
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def message(session, settings, row):
    raw = compose(session, settings, row, SENT).as_bytes()
    return BytesParser(policy=policy.default).parsebytes(raw)


def test_the_learner_email_lists_each_behaviour_with_five_one_click_answers(session, settings):
    sent_checkins(session, settings)
    row = session.exec(select(Outbox).where(Outbox.to_email == "ada@example.com")).first()
    msg = message(session, settings, row)
    assert msg["X-Nudger-Kind"] == "checkin"
    text = msg.get_body(("plain",)).get_content()
    assert "In the last two weeks, how often did you..." in text
    assert "Asks open questions before suggesting" in text
    links = re.findall(r"(Never|Rarely|Sometimes|Often|Always): (\S+)", text)
    assert len(links) == 10
    assert urlsplit(links[2][1]).query == f"b={KEYS[0]}&v=3"


def test_a_manager_email_has_a_block_per_report(session, settings):
    sent_checkins(session, settings)
    row = session.exec(select(Outbox).where(Outbox.to_email == "boss@example.com")).one()
    msg = message(session, settings, row)
    text = msg.get_body(("plain",)).get_content()
    assert msg["Subject"] == "How often did you see 2 of your team do these? A check-in"
    assert "== Ada Lovelace (Coaching, before you start) ==" in text
    assert "== Dan Brown (Coaching, before you start) ==" in text
    assert "how often did you see Dan..." in text


def test_opening_an_answer_link_chooses_it_and_saves_nothing(session, settings):
    found = sent_checkins(session, settings)
    checkin = next(c for (_, rater), c in found.items() if rater == "learner")
    client = app_for(settings, SENT + timedelta(hours=1)).test_client()
    url = page_url(settings, checkin, b=KEYS[0], v=4)
    for method in (client.get, client.head):
        assert method(url).status_code == 200
    page = client.get(url).get_data(as_text=True)
    assert re.search(rf'name="answer-{KEYS[0]}" value="4" checked', page)
    assert "not saved yet" in page
    assert "Opens 1:1s with a question" in page  # the other behaviours are shown
    assert ratings(session) == []
    assert checkins(session)[0].answered_at is None


def test_save_records_every_answer_and_saving_again_updates(session, settings):
    found = sent_checkins(session, settings)
    checkin = next(c for (_, rater), c in found.items() if rater == "learner")
    client = app_for(settings, SENT + timedelta(hours=1)).test_client()
    url = page_url(settings, checkin, b=KEYS[0], v=2)
    token = csrf_token(client.get(url).get_data(as_text=True))
    form = {"csrf_token": token, f"answer-{KEYS[0]}": "2", f"answer-{KEYS[1]}": "0"}
    response = client.post(url, data=form)
    assert response.status_code == 200
    assert "Saved." in response.get_data(as_text=True)
    assert ratings(session) == [("learner", KEYS[0], 2), ("learner", KEYS[1], None)]
    form[f"answer-{KEYS[0]}"] = "3"
    client.post(url, data=form)
    assert ratings(session) == [("learner", KEYS[0], 3), ("learner", KEYS[1], None)]
    answered = next(c for c in checkins(session) if c.id == checkin.id)
    assert answered.answered_at == SENT + timedelta(hours=1)
    assert answered.remind_at is None
    assert session.exec(select(AuditLog).where(AuditLog.action == "checkin.answer")).all()


def test_a_post_without_the_csrf_token_saves_nothing(session, settings):
    found = sent_checkins(session, settings)
    checkin = next(iter(found.values()))
    client = app_for(settings, SENT + timedelta(hours=1)).test_client()
    response = client.post(page_url(settings, checkin), data={f"answer-{KEYS[0]}": "5"})
    assert response.status_code == 400
    assert ratings(session) == []


def test_after_the_checkpoint_closes_the_page_says_so_and_saves_nothing(session, settings):
    found = sent_checkins(session, settings)
    checkin = next(c for (_, rater), c in found.items() if rater == "learner")
    # Ten working days after Monday 1 March: it closed on Monday 15 March at 09:00.
    late = app_for(settings, utc(2027, 3, 15, 9)).test_client()
    open_client = app_for(settings, utc(2027, 3, 15, 8, 59)).test_client()
    token = csrf_token(open_client.get(page_url(settings, checkin)).get_data(as_text=True))
    page = late.get(page_url(settings, checkin)).get_data(as_text=True)
    assert "This check-in has closed" in page
    with late.session_transaction() as s, open_client.session_transaction() as o:
        s.update(dict(o))
    response = late.post(
        page_url(settings, checkin), data={"csrf_token": token, f"answer-{KEYS[0]}": "5"}
    )
    assert response.status_code == 409
    assert "This check-in has closed" in response.get_data(as_text=True)
    assert ratings(session) == []


def test_a_manager_answers_for_one_report_only(session, settings):
    found = sent_checkins(session, settings)
    # By enrolment (Ada's came first): the tick may plan the two check-ins in either order.
    ada_checkin, dan_checkin = sorted(
        (c for (_, rater), c in found.items() if rater == "manager"), key=lambda c: c.enrolment_id
    )
    client = app_for(settings, SENT + timedelta(hours=1)).test_client()
    url = page_url(settings, dan_checkin)
    page = client.get(url).get_data(as_text=True)
    assert "How often did you see Dan Brown" in page
    client.post(url, data={"csrf_token": csrf_token(page), f"answer-{KEYS[0]}": "4"})
    session.expire_all()
    assert session.exec(select(Rating.enrolment_id, Rating.rater, Rating.value)).all() == [
        (dan_checkin.enrolment_id, "manager", 4)
    ]
    assert ada_checkin.enrolment_id != dan_checkin.enrolment_id


def test_a_tampered_or_unknown_answer_saves_nothing(session, settings):
    found = sent_checkins(session, settings)
    checkin = next(iter(found.values()))
    client = app_for(settings, SENT + timedelta(hours=1)).test_client()
    url = page_url(settings, checkin, b="nope", v=9)
    page = client.get(url)
    assert page.status_code == 200
    response = client.post(
        url, data={"csrf_token": csrf_token(page.get_data(as_text=True)), f"answer-{KEYS[0]}": "7"}
    )
    assert response.status_code == 400
    assert ratings(session) == []
    assert client.get("/checkin/not-a-token").status_code == 404


def test_fresh_links_for_an_old_checkin_link_go_to_its_rater(session, settings):
    from nudger.links import person_for

    found = sent_checkins(session, settings)
    manager_checkin = next(c for (_, rater), c in found.items() if rater == "manager")
    assert person_for(session, "checkin", manager_checkin.id).email == "boss@example.com"
    assert person_for(session, "checkin", 999_999) is None
