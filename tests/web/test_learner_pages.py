"""The learner's pages: /done, the completion page, /me, snooze, mute, prefs, fresh links."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser

from sqlmodel import select

from nudger import tokens
from nudger.models import AuditLog, CapturedMail, Outbox
from nudger.outbox.sending import send_batch
from nudger.progress import CohortCounts, complete_step
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import SEND, app_for, csrf_token, fresh, learner_with_first_step, sent_steps

FEEDBACK_STEPS = [
    {"key": "read", "day": 0, "kind": "read", "title": "Read the one-pager", "minutes": 15},
    {
        "key": "ask",
        "day": 0,
        "kind": "feedback",
        "title": "Ask your manager for feedback",
        "confirmed_by": "manager",
    },
]


def page_text(response) -> str:
    """Return the page's words as a person reads them: no tags, single spaces."""
    words = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return re.sub(r"\s+([.,:;)])", r"\1", re.sub(r"\s+", " ", html.unescape(words)))


def done_url(settings, es) -> str:
    return "/done/" + tokens.make_token(settings, "done", es.id)


def test_the_done_page_shows_the_step_and_a_button_and_changes_nothing(settings, session, now):
    journey = make_journey(
        session,
        steps=[
            {
                "key": "read",
                "day": 0,
                "title": "Read the SBI one-pager",
                "minutes": 15,
                "link": "https://intranet.example.com/sbi.pdf",
                "body": "Read it **twice**.",
            }
        ],
    )
    _, _, es = learner_with_first_step(session, settings, now, journey=journey)
    client = app_for(settings, now + SEND).test_client()
    response = client.get(done_url(settings, es))
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Read the SBI one-pager" in body
    assert "<strong>twice</strong>" in body
    assert 'href="https://intranet.example.com/sbi.pdf"' in body
    assert "Mark as done" in body
    assert 'name="csrf_token"' in body
    assert "Due Wednesday 3 March" in page_text(response)
    assert fresh(session, es).status == "sent"


def test_pressing_the_button_completes_the_step_and_shows_what_is_next(settings, session, now):
    _, _, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    url = done_url(settings, es)
    response = client.post(url, data={"csrf_token": csrf_token(client.get(url).text)})
    text = page_text(response)
    assert response.status_code == 200
    assert "Done: “Read the one-pager”" in text
    assert "1 of 3 steps done" in text
    assert '<progress class="bar" value="1"' in response.text
    assert "1 of the 1 person on this journey has done this step" in text
    # Day 2 of a Monday start is Wednesday; 09:00 in London.
    assert "Discuss it arrives by email on Wednesday 3 March at 09:00" in text
    row = fresh(session, es)
    assert row.status == "done"
    assert row.done_at == now + SEND


def test_pressing_twice_is_harmless(settings, session, now):
    _, _, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    url = done_url(settings, es)
    token = csrf_token(client.get(url).text)
    client.post(url, data={"csrf_token": token, "note": "first"})
    second = client.post(url, data={"csrf_token": token, "note": "second"})
    assert second.status_code == 200
    assert "was already done" in page_text(second)
    row = fresh(session, es)
    assert row.note == "first"
    audits = session.exec(select(AuditLog).where(AuditLog.action == "step.done")).all()
    assert len(audits) == 1


def test_the_note_is_kept_and_shared_unless_the_learner_unticks_it(settings, session, now):
    journey = make_journey(session)
    _, _, es1 = learner_with_first_step(session, settings, now, journey=journey)
    _, _, es2 = learner_with_first_step(
        session, settings, now, journey=journey, email="bo@example.com", name="Bo"
    )
    client = app_for(settings, now + SEND).test_client()
    token = csrf_token(client.get(done_url(settings, es1)).text)
    client.post(
        done_url(settings, es1),
        data={"csrf_token": token, "note": " Tried it in standup. ", "share_note": ["no", "yes"]},
    )
    client.post(
        done_url(settings, es2),
        data={"csrf_token": token, "note": "Private thought", "share_note": ["no"]},
    )
    first, second = fresh(session, es1), fresh(session, es2)
    assert (first.note, first.note_shared) == ("Tried it in standup.", True)
    assert (second.note, second.note_shared) == ("Private thought", False)


def test_a_manager_confirmed_step_waits_for_the_manager(settings, session, now):
    journey = make_journey(session, steps=FEEDBACK_STEPS)
    boss = make_person(session, email="boss@example.com", name="Sam Boss")
    _, enrolment, _ = learner_with_first_step(session, settings, now, journey=journey, manager=boss)
    ask = sent_steps(session, enrolment)["ask"]
    client = app_for(settings, now + SEND).test_client()
    url = done_url(settings, ask)
    response = client.post(url, data={"csrf_token": csrf_token(client.get(url).text)})
    assert "your manager will confirm" in page_text(response)
    row = fresh(session, ask)
    assert row.status == "sent"
    assert row.awaiting_confirmation is True
    assert "Waiting for your manager" in client.get(url).text


def test_the_cohort_line_counts_people_on_the_journey_who_did_the_step(settings, session, now):
    journey = make_journey(session)
    people = [
        learner_with_first_step(session, settings, now, journey=journey, email=f"p{i}@example.com")
        for i in range(3)
    ]
    client = app_for(settings, now + SEND).test_client()
    token = csrf_token(client.get(done_url(settings, people[0][2])).text)
    client.post(done_url(settings, people[0][2]), data={"csrf_token": token})
    response = client.post(done_url(settings, people[1][2]), data={"csrf_token": token})
    assert "2 of the 3 people on this journey have done this step" in page_text(response)


def test_a_withdrawn_learner_gets_a_clear_page_and_nothing_changes(settings, session, now):
    _, enrolment, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    url = done_url(settings, es)
    token = csrf_token(client.get(url).text)  # the page was open when the admin withdrew them
    enrolment.status = "withdrawn"
    session.add(enrolment)
    session.commit()
    response = client.post(url, data={"csrf_token": token})
    assert response.status_code == 409
    assert "This step is closed" in response.text
    assert fresh(session, es).status == "sent"


def test_the_me_page_shows_done_due_overdue_and_coming_up_in_the_learners_zone(
    settings, session, now
):
    journey = make_journey(session)
    person = make_person(session, timezone="Pacific/Auckland", country="NZ")
    enrolment = make_enrolment(session, person, journey, now.date())
    # 09:00 Monday in Auckland (UTC+13) is Sunday 20:00 UTC: the tick at `now` sends day 0.
    tick(session, settings, now, enqueue=False)
    read = sent_steps(session, enrolment)["read"]
    read.status, read.done_at, read.note = "done", now, "Useful: the impact part."
    session.add(read)
    session.commit()
    # Day 2 (Wednesday 09:00 NZDT) is Tuesday 20:00 UTC.
    tick(session, settings, datetime(2027, 3, 2, 20, 0, tzinfo=UTC), enqueue=False)
    late = datetime(2027, 3, 8, 1, 0, tzinfo=UTC)  # Monday 8 March, 14:00 in Auckland
    client = app_for(settings, late).test_client()
    response = client.get("/me/" + tokens.make_token(settings, "me", enrolment.id))
    text = page_text(response)
    assert response.status_code == 200
    assert "Overdue (1)" in text
    # Sent Wednesday 3 March, due two working days later: Friday 5 March, local.
    assert "was due Friday 5 March (1 working day overdue)" in text
    assert "Coming up (1)" in text
    # Day 5 from Monday 1 March is Monday 8 March in Auckland (Sunday 7 March in UTC).
    assert "Reflect · arrives Monday 8 March" in text
    assert "Done (1)" in text
    assert "Useful: the impact part." in text
    assert "Times are in your time zone, Pacific/Auckland." in text


def test_a_step_can_be_completed_from_the_me_page(settings, session, now):
    _, enrolment, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    me = "/me/" + tokens.make_token(settings, "me", enrolment.id)
    token = csrf_token(client.get(me).text)
    response = client.post(
        f"{me}/done/{es.id}", data={"csrf_token": token, "note": "Done on the train"}
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{me}#step-read")
    after = client.get(me)
    assert "Done: “Read the one-pager”." in page_text(after)
    assert fresh(session, es).status == "done"
    assert fresh(session, es).note == "Done on the train"


def test_the_me_page_refuses_a_step_of_another_enrolment(settings, session, now):
    journey = make_journey(session)
    _, mine, _ = learner_with_first_step(session, settings, now, journey=journey)
    _, _, theirs = learner_with_first_step(
        session, settings, now, journey=journey, email="bo@example.com"
    )
    client = app_for(settings, now + SEND).test_client()
    me = "/me/" + tokens.make_token(settings, "me", mine.id)
    token = csrf_token(client.get(me).text)
    assert client.post(f"{me}/done/{theirs.id}", data={"csrf_token": token}).status_code == 404
    assert client.post(f"{me}/snooze/{theirs.id}", data={"csrf_token": token}).status_code == 404
    assert fresh(session, theirs).status == "sent"


def test_snoozing_moves_reminders_to_the_next_working_day_not_the_due_date(settings, session, now):
    _, enrolment, es = learner_with_first_step(session, settings, now)
    friday = datetime(2027, 3, 5, 15, 0, tzinfo=UTC)
    client = app_for(settings, friday).test_client()
    me = "/me/" + tokens.make_token(settings, "me", enrolment.id)
    page = client.get(me)
    assert "Snooze reminders until Monday 8 March" in page_text(page)
    response = client.post(f"{me}/snooze/{es.id}", data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 303
    row = fresh(session, es)
    # Friday afternoon: reminders resume Monday at the send time, 09:00 London.
    assert row.snoozed_until == datetime(2027, 3, 8, 9, 0, tzinfo=UTC)
    assert row.due_at == es.due_at
    assert row.status == "sent"
    text = page_text(client.get(me))
    assert "no reminders before Monday 8 March at 09:00" in text
    assert "Reminders snoozed until Monday 8 March at 09:00." in text


def test_mute_page_shows_a_button_and_changes_nothing(settings, session, now):
    _, enrolment, _ = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    response = client.get("/mute/" + tokens.make_token(settings, "mute", enrolment.id))
    assert response.status_code == 200
    assert "Mute reminders" in response.text
    assert "still get each step" in page_text(response)
    assert fresh(session, enrolment).reminders_muted is False


def test_the_mute_button_mutes_and_unmutes_reminders(settings, session, now):
    _, enrolment, _ = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    url = "/mute/" + tokens.make_token(settings, "mute", enrolment.id)
    token = csrf_token(client.get(url).text)
    response = client.post(url, data={"csrf_token": token, "action": "mute"})
    assert response.status_code == 200
    assert "Reminders muted" in response.text
    assert fresh(session, enrolment).reminders_muted is True
    assert "Turn reminders back on" in client.get(url).text
    client.post(url, data={"csrf_token": token, "action": "unmute"})
    assert fresh(session, enrolment).reminders_muted is False


def test_rfc8058_one_click_mutes_without_a_csrf_token(settings, session, now):
    _, enrolment, _ = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    url = "/mute/" + tokens.make_token(settings, "mute", enrolment.id)
    response = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert fresh(session, enrolment).reminders_muted is True


def test_a_mute_post_with_neither_one_click_nor_csrf_is_refused(settings, session, now):
    _, enrolment, _ = learner_with_first_step(session, settings, now)
    client = app_for(settings, now + SEND).test_client()
    url = "/mute/" + tokens.make_token(settings, "mute", enrolment.id)
    response = client.post(url, data={"action": "mute"})
    assert response.status_code == 400
    assert "Nothing was changed" in response.text
    assert fresh(session, enrolment).reminders_muted is False


def test_a_manager_chooses_weekly_digests(settings, session, now):
    boss = make_person(session, email="boss@example.com", name="Sam Boss")
    client = app_for(settings, now).test_client()
    url = "/prefs/" + tokens.make_token(settings, "prefs", boss.id)
    page = client.get(url)
    assert 'type="radio"' in page.text
    assert fresh(session, boss).digest_every is None
    response = client.post(url, data={"csrf_token": csrf_token(page.text), "every": "week"})
    assert response.status_code == 200
    assert "Saved: once a week" in response.text
    assert fresh(session, boss).digest_every == "week"


def test_rfc8058_one_click_on_the_digest_stops_it(settings, session, now):
    boss = make_person(session, email="boss@example.com", name="Sam Boss")
    client = app_for(settings, now).test_client()
    url = "/prefs/" + tokens.make_token(settings, "prefs", boss.id)
    response = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "Stopped: no more team digests" in response.text
    assert fresh(session, boss).digest_every == "never"


def test_a_manager_stops_digests_and_the_page_says_who_hears_instead(settings, session, now):
    boss = make_person(session, email="boss@example.com", name="Sam Boss")
    client = app_for(settings, now).test_client()
    url = "/prefs/" + tokens.make_token(settings, "prefs", boss.id)
    page = client.get(url)
    assert 'value="never"' in page.text and "your own manager is told instead" in page.text
    response = client.post(url, data={"csrf_token": csrf_token(page.text), "every": "never"})
    assert "Stopped: no more team digests" in response.text
    assert fresh(session, boss).digest_every == "never"


def test_an_unknown_digest_choice_is_refused(settings, session, now):
    boss = make_person(session, email="boss@example.com", name="Sam Boss")
    client = app_for(settings, now).test_client()
    url = "/prefs/" + tokens.make_token(settings, "prefs", boss.id)
    token = csrf_token(client.get(url).text)
    response = client.post(url, data={"csrf_token": token, "every": "hourly"})
    assert response.status_code == 400
    assert fresh(session, boss).digest_every is None


def test_an_old_link_still_works_while_the_enrolment_is_live(settings, session, now):
    _, _, es = learner_with_first_step(session, settings, now)
    old = tokens.make_token(settings, "done", es.id, now - timedelta(days=400))
    client = app_for(settings, now + SEND).test_client()
    assert client.get("/done/" + old).status_code == 200


def test_an_expired_link_offers_a_fresh_one_sent_to_the_address_on_file(
    settings, session, engine, now
):
    _, enrolment, es = learner_with_first_step(session, settings, now)
    enrolment.status, enrolment.updated_at = "completed", now
    session.add(enrolment)
    session.commit()
    later = now + timedelta(days=400)
    client = app_for(settings, later).test_client()
    old = tokens.make_token(settings, "done", es.id, now)
    page = client.get("/done/" + old)
    assert page.status_code == 410
    assert "This link has expired" in page.text
    assert "Email me a fresh link" in page.text
    token = csrf_token(page.text)
    # An address in the form is ignored: the link goes to the address on file.
    sent = client.post(f"/fresh/done/{old}", data={"csrf_token": token, "email": "x@evil.test"})
    assert sent.status_code == 200
    assert "a••@example.com" in sent.text
    rows = session.exec(select(Outbox).where(Outbox.kind == "links")).all()
    assert [r.to_email for r in rows] == ["ada@example.com"]

    again = client.post(f"/fresh/done/{old}", data={"csrf_token": token})
    assert again.status_code == 429
    assert len(session.exec(select(Outbox).where(Outbox.kind == "links")).all()) == 1

    counts = send_batch(engine, settings, [rows[0].id], later)
    assert counts["sent"] == 1
    mail = session.exec(select(CapturedMail).where(CapturedMail.kind == "links")).one()
    msg = BytesParser(policy=policy.default).parsebytes(mail.raw)
    assert msg["To"] == "ada@example.com"
    assert msg["Subject"] == "Your fresh Nudger links"
    text = msg.get_body(("plain",)).get_content()
    me_link = re.search(r"http://nudger\.test(/me/\S+)", text).group(1)
    assert client.get(me_link).status_code == 200


def test_a_fresh_link_request_from_a_tampered_link_is_refused(settings, session, now):
    _, _, es = learner_with_first_step(session, settings, now)
    client = app_for(settings, now).test_client()
    good = tokens.make_token(settings, "done", es.id)
    token = csrf_token(client.get("/done/" + good).text)
    response = client.post(f"/fresh/done/{good[:-4]}xxxx", data={"csrf_token": token})
    assert response.status_code == 404
    assert session.exec(select(Outbox).where(Outbox.kind == "links")).all() == []


def test_pages_open_from_links_signed_before_a_key_rotation(settings, session, now):
    _, enrolment, es = learner_with_first_step(session, settings, now)
    old_done = tokens.make_token(settings, "done", es.id)
    old_me = tokens.make_token(settings, "me", enrolment.id)
    rotated = dataclasses.replace(
        settings, secret_key="a-brand-new-key", secret_key_fallbacks=[settings.secret_key]
    )
    client = app_for(rotated, now + SEND).test_client()
    page = client.get(f"/done/{old_done}")
    assert page.status_code == 200
    assert client.get(f"/me/{old_me}").status_code == 200
    client.post(f"/done/{old_done}", data={"csrf_token": csrf_token(page.text)})
    assert fresh(session, es).status == "done"
    retired = dataclasses.replace(settings, secret_key="a-brand-new-key", secret_key_fallbacks=[])
    assert app_for(retired, now + SEND).test_client().get(f"/me/{old_me}").status_code == 404


def test_cohort_counts_are_kept_briefly_and_count_each_completion(settings, session, now):
    journey = make_journey(session)
    people = [
        learner_with_first_step(session, settings, now, journey=journey, email=f"p{i}@example.com")
        for i in range(3)
    ]
    counts = CohortCounts(ttl=timedelta(seconds=30))
    step_id = people[0][2].step_id
    assert counts.get(session, step_id, journey.id, now, just_done=False) == (0, 3)
    complete_step(session, people[0][2].id, now)
    # Within the TTL the kept count gains the completion this process just made...
    assert counts.get(session, step_id, journey.id, now + timedelta(seconds=5), True) == (1, 3)
    # ...but not one made elsewhere, until the count is taken again.
    complete_step(session, people[1][2].id, now)
    assert counts.get(session, step_id, journey.id, now + timedelta(seconds=10), False) == (1, 3)
    assert counts.get(session, step_id, journey.id, now + timedelta(seconds=31), False) == (2, 3)
