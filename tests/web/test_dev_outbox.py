"""/outbox: captured mail shown as the recipient sees it, and never in production."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from icalendar import Calendar
from sqlmodel import select

from nudger import create_app
from nudger.enrolments.changes import withdraw
from nudger.models import CapturedMail, Enrolment, Outbox
from nudger.outbox.sending import send_batch
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person

START = date(2027, 3, 1)  # a Monday
NINE = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def capture(session, engine, settings, when: datetime) -> list[int]:
    """Tick at `when` and send what it decided into the outbox; return the captured ids."""
    before = set(session.exec(select(CapturedMail.id)))
    tick(session, settings, when, enqueue=False)
    pending = list(session.exec(select(Outbox.id).where(Outbox.state == "pending")))
    send_batch(engine, settings, pending, when)
    session.expire_all()
    return sorted(set(session.exec(select(CapturedMail.id))) - before)


def learners(session, count: int = 2, start: date = START) -> None:
    journey = make_journey(session)
    names = ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    for i in range(count):
        email = names[i].split()[0].lower() + "@example.com"
        make_enrolment(session, make_person(session, email, names[i]), journey, start)


@pytest.fixture
def client(settings, engine):
    return create_app(settings).test_client()


@pytest.mark.parametrize(
    "smtp_url",
    [
        "smtp://mail.example.com:25",
        "smtp+starttls://u:p@mail.example.com",
        "smtps://mail.example.com",
    ],
)
def test_the_outbox_does_not_exist_when_mail_goes_out_by_smtp(session, engine, settings, smtp_url):
    learners(session, 1)
    capture(session, engine, settings, NINE)  # mail captured earlier, in development
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_url))
    client = app.test_client()

    assert not [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("dev.")]
    for path in ("/outbox", "/outbox/1", "/outbox/1/html", "/outbox/1.eml", "/outbox/1.ics"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"Page not found" in response.data
        assert b"BEGIN:VCALENDAR" not in response.data
    assert client.post("/outbox/clear").status_code == 404
    assert session.exec(select(CapturedMail)).all()


def test_the_list_shows_captured_mail_newest_first(client, session, engine, settings):
    learners(session, 2)
    first = capture(session, engine, settings, NINE)
    withdraw(session, session.exec(select(Enrolment)).first(), NINE + timedelta(minutes=10))
    session.commit()
    cancel = capture(session, engine, settings, NINE + timedelta(minutes=11))

    page = client.get("/outbox").get_data(as_text=True)

    assert len(first) == 2 and len(cancel) == 1
    rows = re.findall(r'href="/outbox/(\d+)"', page)
    assert [int(r) for r in rows] == [*cancel, *reversed(first)]
    assert "Cancelled: Read the one-pager" in page
    assert "3 messages." in page


def test_the_list_filters_by_kind_and_recipient(client, session, engine, settings):
    learners(session, 3)
    capture(session, engine, settings, NINE)
    withdraw(session, session.exec(select(Enrolment)).first(), NINE + timedelta(minutes=10))
    session.commit()
    capture(session, engine, settings, NINE + timedelta(minutes=11))

    cancels = client.get("/outbox?kind=invite-cancel").get_data(as_text=True)
    grace = client.get("/outbox?to=GRACE").get_data(as_text=True)
    nobody = client.get("/outbox?to=nobody%25").get_data(as_text=True)

    assert "1 message matches." in cancels and "ada@example.com" in cancels
    assert "grace@example.com" in grace and "ada@example.com" not in grace
    assert "No captured mail to an address containing “nobody%”." in nobody


def test_the_list_pages_back_to_older_mail(client, session, engine, settings):
    session.add_all(
        CapturedMail(to_email=f"p{i}@example.com", subject=f"Message {i}", kind="step", raw=b"x")
        for i in range(60)
    )
    session.commit()

    newest = client.get("/outbox").get_data(as_text=True)
    older_link = re.search(r'href="(/outbox\?before=\d+)"', newest).group(1)
    older = client.get(older_link).get_data(as_text=True)

    assert "Message 59" in newest and "Message 10" in newest and "Message 9<" not in newest
    assert "Message 9<" in older and "Message 0<" in older and "Message 10<" not in older
    assert "Older" not in older


def test_a_message_page_shows_the_parts_the_recipient_gets(client, session, engine, settings):
    learners(session, 1)
    [mail_id] = capture(session, engine, settings, NINE)

    page = client.get(f"/outbox/{mail_id}").get_data(as_text=True)

    assert "<h1>Step 1 of 3: Read the one-pager</h1>" in page
    assert f'src="/outbox/{mail_id}/html"' in page
    # Same origin so that the page can size the frame; never scripts, so that is safe.
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in page
    assert "allow-scripts" not in page and "allow-forms" not in page
    assert "Mark it done here:" in page  # the plain-text part
    assert "METHOD:REQUEST" in page and "Mon 01 Mar 2027, 10:00" in page
    assert "Europe/London" in page and "nudger.1.read@example.org" in page
    assert "X-Nudger-Kind" in page and "Auto-Submitted" in page
    assert f'href="/outbox/{mail_id}.eml"' in page
    assert f'href="/outbox/{mail_id}/1.ics"' in page


def test_the_html_goes_to_the_frame_sandboxed_with_links_opening_a_new_tab(
    client, session, engine, settings
):
    learners(session, 1)
    [mail_id] = capture(session, engine, settings, NINE)

    response = client.get(f"/outbox/{mail_id}/html")
    html = response.get_data(as_text=True)

    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith(
        "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox;"
    )
    assert "allow-scripts" not in policy and "default-src 'none'" in policy
    assert "script-src" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert '<head><base target="_blank">' in html
    assert "http://nudger.test/done/" in html


def test_the_eml_download_is_the_message_as_it_was_sent(client, session, engine, settings):
    learners(session, 1)
    [mail_id] = capture(session, engine, settings, NINE)

    response = client.get(f"/outbox/{mail_id}.eml")
    msg = message_from_bytes(response.data, policy=default_policy)

    assert response.headers["Content-Disposition"] == f"attachment; filename=nudger-{mail_id}.eml"
    assert response.mimetype == "message/rfc822"
    assert response.data == session.get(CapturedMail, mail_id).raw
    assert msg["Message-ID"] == session.exec(select(Outbox.message_id)).one()


def test_each_invite_of_a_catch_up_email_downloads_on_its_own(client, session, engine, settings):
    learners(session, 1)
    # Friday: days 0 and 2 are both due, in one email with two invites.
    [mail_id] = capture(session, engine, settings, NINE + timedelta(days=4))

    first = client.get(f"/outbox/{mail_id}/1.ics")
    second = client.get(f"/outbox/{mail_id}/2.ics")
    uids = [str(Calendar.from_ical(r.data).walk("VEVENT")[0]["uid"]) for r in (first, second)]

    assert first.mimetype == "text/calendar"
    assert uids == ["nudger.1.read@example.org", "nudger.1.discuss@example.org"]
    assert client.get(f"/outbox/{mail_id}.ics").data == first.data
    assert client.get(f"/outbox/{mail_id}/3.ics").status_code == 404


def test_deleting_captured_mail_takes_a_post_with_a_csrf_token(client, session, engine, settings):
    learners(session, 1)
    capture(session, engine, settings, NINE)
    page = client.get("/outbox").get_data(as_text=True)

    refused = client.post("/outbox/clear")
    assert refused.status_code == 400 and session.exec(select(CapturedMail)).all()
    assert client.get("/outbox/clear").status_code == 405

    done = client.post("/outbox/clear", data={"csrf_token": CSRF.search(page).group(1)})
    assert done.status_code == 302
    session.expire_all()
    assert session.exec(select(CapturedMail)).all() == []
    assert "No mail yet." in client.get("/outbox").get_data(as_text=True)


def test_a_message_that_is_not_there_gets_a_clear_page(client):
    response = client.get("/outbox/4242")

    assert response.status_code == 404
    assert b"Page not found" in response.data
