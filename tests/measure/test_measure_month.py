"""A month of hourly ticks measuring one team: check-ins over SMTP, answers over HTTP.

Max (a manager in New York) has six reports in London on a journey that
measures two behaviours at the start, the end and 5 working days after, by
the learners and by Max; Solo (London) has no manager. Eve never answers;
Pat is paused on the 8th and never resumed. Everyone else answers every
check-in the afternoon it comes, through the real check-in page: they open a
one-click answer link (which must change nothing), then choose all their
answers and press Save.

Dates, worked out by hand: start Monday 1 March; steps on days 0, 2 and 5
(the last on Monday 8th, due two working days later, Wednesday 10th); end
Thursday 11th; "5" Thursday 18th. Send time 09:00: 09:00 UTC in London
(GMT all month), 14:00 UTC in New York until the US clocks change on the
14th, 13:00 UTC after. A learner's check-in is reminded once, two working days
after; a manager's unanswered one is in their next digest after that time.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from http.cookiejar import CookieJar
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, Request, build_opener

from click.testing import CliRunner
from sqlmodel import func, select

from nudger.cli import main
from nudger.enrolments.changes import pause
from nudger.models import Outbox, Rating
from nudger.outbox.sending import send_batch
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_person
from tests.measure.kit import make_measured_journey
from tests.pagekit import live_server
from tests.smtpd import SmtpSink

FIRST = datetime(2027, 3, 1, 0, tzinfo=UTC)
LAST = datetime(2027, 3, 31, 23, tzinfo=UTC)
A, B = "asks-open-questions", "opens-1-1s-with-a-question-about-the-person-s-goal"
NAMES = ["Kim", "Ben", "Lee", "Nia", "Eve", "Pat"]
CHECKPOINTS = {"before you start": "start", "at the end of the journey": "end"}
# What each learner answers about A (B is always "Sometimes"), and Max about each of them.
SELF = {"start": [1, 2, 2, 3, 0, 2], "end": [3, 3, 2, 4, 0, 0], "5": [4, 3, 3, 4, 0, 0]}
BOSS = {"start": [2, 2, 1, 2, 0, 1], "end": [3, 4, 2, 3, 0, 0], "5": [3, 4, 3, 4, 0, 0]}
ANSWER_LINK = re.compile(r"(?:Never|Rarely|Sometimes|Often|Always): (\S+)")


def test_a_month_of_check_ins_measures_the_team(session, settings, engine):
    journey = make_measured_journey(session, measure={"at": ["start", "end", 5]})
    max_ = make_person(
        session, "max@example.com", "Max Manager", timezone="America/New_York", country="US"
    )
    people = {n: make_person(session, f"{n.lower()}@example.com", f"{n} Test", max_) for n in NAMES}
    solo = make_person(session, "solo@example.com", "Solo Test")
    enrolments = {
        n: make_enrolment(session, p, journey, date(2027, 3, 1)) for n, p in people.items()
    }
    make_enrolment(session, solo, journey, date(2027, 3, 1))
    index = {p.email: i for i, p in enumerate(people.values())}

    received: list[tuple[datetime, str, object]] = []
    gets_changed: list[str] = []
    clock = [FIRST]
    with SmtpSink() as sink, live_server(settings, FIRST) as (base, app):
        app.config["NUDGER_CLOCK"] = lambda: clock[0]
        smtp = dataclasses.replace(settings, smtp_url=sink.url(), base_url=base)
        todo: dict[datetime, list[tuple[str, object]]] = defaultdict(list)
        while clock[0] <= LAST:
            now = clock[0]
            if now == datetime(2027, 3, 8, 12, tzinfo=UTC):
                pause(session, enrolments["Pat"], now)
                session.commit()
            for to, msg in todo.pop(now, []):
                _answer(to, msg, index, gets_changed, session)
            tick(session, smtp, now, enqueue=False)
            pending = session.exec(select(Outbox.id).where(Outbox.state == "pending")).all()
            start = len(sink.messages)
            if pending:
                assert send_batch(engine, smtp, list(pending), now).get("failed", 0) == 0
            for got in sink.messages[start:]:
                msg = got.message
                received.append((now, str(msg["X-Nudger-Kind"]), msg))
                if msg["X-Nudger-Kind"] == "checkin" and msg["To"] != "eve@example.com":
                    todo[now + timedelta(hours=2)].append((str(msg["To"]), msg))
            session.expire_all()
            clock[0] += timedelta(hours=1)

    assert gets_changed == []  # opening an answer link never recorded anything

    def checkins_to(email: str) -> list[tuple[datetime, bool]]:
        return [
            (w, "Reminder" in str(m["Subject"]))
            for w, k, m in received
            if k == "checkin" and m["To"] == email
        ]

    # Status quo on the start day at 09:00 local, before step 1, to both raters.
    first_day = [(w, k, str(m["To"])) for w, k, m in received if w.date() == date(2027, 3, 1)]
    assert ("checkin", "kim@example.com") in [(k, t) for _, k, t in first_day]
    kim_checkin = next(w for w, k, t in first_day if (k, t) == ("checkin", "kim@example.com"))
    kim_step = next(w for w, k, t in first_day if (k, t) == ("step", "kim@example.com"))
    assert kim_checkin == kim_step == _utc(1, 9)
    kim = [k for _, k, t in first_day if t == "kim@example.com"]
    assert kim.index("checkin") < kim.index("step")  # the status quo comes first

    # Kim: start, end and 5 days after, at 09:00 London; never reminded (always answers).
    assert checkins_to("kim@example.com") == [
        (_utc(1, 9), False),
        (_utc(11, 9), False),
        (_utc(18, 9), False),
    ]
    # Eve never answers: one reminder per checkpoint, two working days after, no more.
    assert checkins_to("eve@example.com") == [
        (_utc(1, 9), False),
        (_utc(3, 9), True),
        (_utc(11, 9), False),
        (_utc(15, 9), True),
        (_utc(18, 9), False),
        (_utc(22, 9), True),
    ]
    # Pat, paused on the 8th, gets no end or later check-in.
    assert checkins_to("pat@example.com") == [(_utc(1, 9), False)]
    # Solo has no manager: learner check-ins only.
    assert [w for w, _ in checkins_to("solo@example.com")] == [_utc(1, 9), _utc(11, 9), _utc(18, 9)]
    # Max: one email per day for all his reports due, at 09:00 New York (EST, then EDT).
    max_mail = checkins_to("max@example.com")
    assert max_mail == [(_utc(1, 14), False), (_utc(11, 14), False), (_utc(18, 13), False)]
    blocks = [
        len(re.findall(r"^== ", _text(m), re.M))
        for w, k, m in received
        if k == "checkin" and m["To"] == "max@example.com"
    ]
    assert blocks == [6, 5, 5]  # Pat paused after the start
    # What he leaves unanswered (Eve) is in his next digest (08:00 New York) after the
    # reminder time, two working days later, once per checkpoint; no reminder email.
    asked = [
        (w, re.findall(r"^== (\w+) Test", _text(m), re.M))
        for w, k, m in received
        if k == "digest" and m["To"] == "max@example.com" and "waiting for your answers" in _text(m)
    ]
    assert asked == [(_utc(4, 13), ["Eve"]), (_utc(16, 12), ["Eve"]), (_utc(23, 12), ["Eve"])]

    # `nudger ratings` agrees with the answers given.
    out = CliRunner().invoke(
        main,
        ["ratings", "--format", "json"],
        env={
            "NUDGER_DATABASE_URL": settings.database_url,
            "NUDGER_INSTANCE_PATH": str(settings.instance_path),
            "NUDGER_SECRET_KEY": settings.secret_key,
        },
    )
    assert out.exit_code == 0, out.output
    [figures] = json.loads(out.output)["journeys"]
    by_key = {b["key"]: b["raters"] for b in figures["behaviours"]}
    # Learners: Kim, Ben, Lee, Nia and Solo (who answers Sometimes) rated the start and
    # "5": five pairs, so the means show. Max: four pairs (Eve never, Pat paused): hidden.
    starts, latest = [1, 2, 2, 3, 3], [4, 3, 3, 4, 3]
    assert by_key[A]["learner"] == {
        "pairs": 5,
        "start": round(sum(starts) / 5, 2),
        "latest": round(sum(latest) / 5, 2),
        "shift": round((sum(latest) - sum(starts)) / 5, 2),
        "improved": 0.8,  # all but Solo moved up a point or more
    }
    assert by_key[A]["manager"] == {
        "pairs": 4,
        "start": None,
        "latest": None,
        "shift": None,
        "improved": None,
    }
    assert by_key[B]["learner"]["shift"] == 0.0  # Sometimes, then Sometimes
    rates = figures["response_rates"]
    assert rates["start"]["learner"] == {"sent": 7, "answered": 6, "rate": 0.86, "no_manager": 0}
    assert rates["start"]["manager"] == {"sent": 6, "answered": 5, "rate": 0.83, "no_manager": 1}
    assert rates["end"]["learner"]["sent"] == 6  # Pat paused
    answered = session.exec(select(func.count()).select_from(Rating)).one()
    # Learners: 6 answered start, 5 end, 5 "5" (Kim..Nia + Solo); 2 behaviours each.
    # Max: 5 start, 4 end, 4 "5"; 2 behaviours each.
    assert answered == 2 * (6 + 5 + 5) + 2 * (5 + 4 + 4)


def _answer(to, msg, index, gets_changed, session) -> None:
    """Answer a check-in as a person: open one answer link, then fill in the page and Save."""
    text = _text(msg)
    reminder = "Reminder" in str(msg["Subject"])
    for block in re.split(r"^== ", text, flags=re.M)[1:] if "== " in text else [text]:
        links = ANSWER_LINK.findall(block)
        if not links:
            continue
        url = html.unescape(links[0])
        opener = build_opener(HTTPCookieProcessor(CookieJar()))
        before = _ratings(session)
        opener.open(Request(url, method="HEAD")).read()
        page = opener.open(url).read().decode()
        if _ratings(session) != before:
            gets_changed.append(url)
        name_match = re.search(r"How often did you see (\w+) Test", page)
        who = f"{name_match[1].lower()}@example.com" if name_match else to
        if who == "eve@example.com" or (who == "solo@example.com" and reminder):
            continue
        checkpoint = _checkpoint(page, block)
        i = index.get(who)
        given = (BOSS if name_match else SELF)[checkpoint]
        value = given[i] if i is not None else 3
        if not value:
            continue
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
        form = {"csrf_token": token, f"answer-{A}": str(value), f"answer-{B}": "3"}
        post = Request(url.split("?")[0], data=urlencode(form).encode(), method="POST")
        post.add_header("Referer", url)
        saved = opener.open(post).read().decode()
        assert "Saved." in saved, saved[:400]
        assert urlsplit(url).path.startswith("/checkin/")


def _ratings(session) -> int:
    session.expire_all()
    return session.exec(select(func.count()).select_from(Rating)).one()


def _checkpoint(page: str, block: str) -> str:
    for words, checkpoint in CHECKPOINTS.items():
        if words in block:
            return checkpoint
    return "5"


def _text(msg) -> str:
    return msg.get_body(("plain",)).get_content()


def _utc(day: int, hour: int) -> datetime:
    return datetime(2027, 3, day, hour, tzinfo=UTC)
