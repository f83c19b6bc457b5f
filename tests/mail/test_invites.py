"""Calendar invites: RFC 5545/5546 shape, read back by two independent parsers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import vobject
from icalendar import Calendar

from nudger.mail.invites import Invite, InviteEvent, build_invite, build_invites, make_uid

NOW = datetime(2026, 3, 27, 8, 30, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")
ORGANIZER = "Nudger <nudger@example.org>"


def event(**overrides) -> InviteEvent:
    values = dict(
        uid=make_uid(7, "read-sbi", "example.org"),
        sequence=0,
        start=datetime(2026, 3, 30, 10, 0, tzinfo=LONDON),
        minutes=15,
        tz="Europe/London",
        summary="Read the SBI one-pager",
        description="Read it twice, then note one situation.",
        url="https://nudger.test/done/tok-1",
    )
    values.update(overrides)
    return InviteEvent(**values)


def invite(method="REQUEST", events=None) -> Invite:
    return build_invite(
        method,
        events or [event()],
        organizer=ORGANIZER,
        attendee="maya@example.com",
        attendee_name="Maya Patel",
        now=NOW,
    )


def parse(ics: bytes) -> Calendar:
    return Calendar.from_ical(ics)


def test_request_has_method_prodid_version_and_one_event():
    cal = parse(invite().ics)

    assert cal["METHOD"] == "REQUEST"
    assert cal["VERSION"] == "2.0"
    assert "Nudger" in str(cal["PRODID"])
    assert len(cal.walk("VEVENT")) == 1


def test_request_event_carries_uid_sequence_stamp_and_times_in_learner_zone():
    vevent = parse(invite(events=[event(sequence=3)]).ics).walk("VEVENT")[0]

    assert str(vevent["UID"]) == "nudger.7.read-sbi@example.org"
    assert int(vevent["SEQUENCE"]) == 3
    assert vevent.decoded("DTSTAMP") == NOW
    assert vevent["DTSTART"].params["TZID"] == "Europe/London"
    assert vevent.decoded("DTSTART") == datetime(2026, 3, 30, 10, 0, tzinfo=LONDON)
    assert vevent.decoded("DTEND") - vevent.decoded("DTSTART") == timedelta(minutes=15)


def test_start_given_in_another_zone_is_expressed_in_the_learner_zone():
    start = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)  # 10:00 BST
    vevent = parse(invite(events=[event(start=start)]).ics).walk("VEVENT")[0]

    assert vevent["DTSTART"].params["TZID"] == "Europe/London"
    assert vevent.decoded("DTSTART").hour == 10


def test_request_attendee_does_not_ask_for_a_reply():
    vevent = parse(invite().ics).walk("VEVENT")[0]
    attendee = vevent["ATTENDEE"]

    assert str(attendee) == "mailto:maya@example.com"
    assert attendee.params["CN"] == "Maya Patel"
    assert attendee.params["RSVP"] == "FALSE"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert str(vevent["ORGANIZER"]) == "mailto:nudger@example.org"
    assert vevent["ORGANIZER"].params["CN"] == "Nudger"


def test_request_is_confirmed_busy_time_with_a_ten_minute_display_alarm():
    vevent = parse(invite().ics).walk("VEVENT")[0]
    alarms = vevent.walk("VALARM")

    assert vevent["STATUS"] == "CONFIRMED"
    assert vevent["TRANSP"] == "OPAQUE"
    assert len(alarms) == 1
    assert alarms[0]["ACTION"] == "DISPLAY"
    assert alarms[0].decoded("TRIGGER") == timedelta(minutes=-10)


def test_description_and_url_carry_the_done_link():
    vevent = parse(invite().ics).walk("VEVENT")[0]

    assert str(vevent["URL"]) == "https://nudger.test/done/tok-1"
    assert "Read it twice" in str(vevent["DESCRIPTION"])
    assert "https://nudger.test/done/tok-1" in str(vevent["DESCRIPTION"])


def test_cancel_is_cancelled_with_same_uid_and_no_alarm():
    cal = parse(invite("CANCEL", [event(sequence=1)]).ics)
    vevent = cal.walk("VEVENT")[0]

    assert cal["METHOD"] == "CANCEL"
    assert vevent["STATUS"] == "CANCELLED"
    assert str(vevent["UID"]) == "nudger.7.read-sbi@example.org"
    assert int(vevent["SEQUENCE"]) == 1
    assert vevent.walk("VALARM") == []
    assert "PARTSTAT" not in vevent["ATTENDEE"].params
    assert vevent["ATTENDEE"].params["RSVP"] == "FALSE"


def test_vtimezone_is_included_and_small():
    ics = invite().ics
    cal = parse(ics)
    zones = cal.walk("VTIMEZONE")

    assert [str(z["TZID"]) for z in zones] == ["Europe/London"]
    # A year of transitions, not icalendar's default 1970-2038 range.
    assert len(zones[0].subcomponents) <= 4
    assert len(ics) < 3000
    assert ics.index(b"BEGIN:VTIMEZONE") < ics.index(b"BEGIN:VEVENT")


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/London", datetime(2026, 1, 12, 10, 0)),
        ("Europe/London", datetime(2026, 7, 13, 10, 0)),
        ("America/New_York", datetime(2026, 11, 2, 10, 0)),
        ("Australia/Sydney", datetime(2026, 4, 6, 10, 0)),
        ("Asia/Kolkata", datetime(2026, 3, 30, 10, 0)),
    ],
)
def test_vtimezone_definition_gives_the_event_its_real_offset(zone, start):
    local = start.replace(tzinfo=ZoneInfo(zone))
    cal = parse(invite(events=[event(start=local, tz=zone)]).ics)
    # Build the zone from the VTIMEZONE rules alone, as a client without the
    # IANA database (Outlook) must.
    defined = cal.timezones[0].to_tz(lookup_tzid=False)

    assert str(cal.timezones[0]["TZID"]) == zone
    assert start.replace(tzinfo=defined).utcoffset() == local.utcoffset()


def test_vobject_reads_the_request():
    parsed = vobject.readOne(invite(events=[event(sequence=2)]).ics.decode())
    vevent = parsed.vevent

    assert parsed.method.value == "REQUEST"
    assert vevent.uid.value == "nudger.7.read-sbi@example.org"
    assert vevent.sequence.value == "2"
    assert vevent.dtstart.params["X-VOBJ-ORIGINAL-TZID"] == ["Europe/London"]
    assert parsed.vtimezone.tzid.value == "Europe/London"
    assert vevent.dtstart.value.utcoffset() == timedelta(hours=1)
    assert vevent.attendee.params["RSVP"] == ["FALSE"]
    assert vevent.attendee.value == "mailto:maya@example.com"
    assert hasattr(parsed, "vtimezone")


def test_vobject_reads_the_cancel():
    parsed = vobject.readOne(invite("CANCEL").ics.decode())

    assert parsed.method.value == "CANCEL"
    assert parsed.vevent.status.value == "CANCELLED"


def test_text_with_commas_semicolons_and_newlines_survives_a_round_trip():
    item = event(summary="Read, reflect; repeat", description="Line one\nLine two, with; marks")
    parsed = vobject.readOne(invite(events=[item]).ics.decode())

    assert parsed.vevent.summary.value == "Read, reflect; repeat"
    assert parsed.vevent.description.value.startswith("Line one\nLine two, with; marks")


def test_several_uids_in_one_invite_are_refused():
    other = event(uid=make_uid(7, "discuss", "example.org"))

    with pytest.raises(ValueError, match="one UID"):
        invite(events=[event(), other])


def test_build_invites_makes_one_message_per_uid():
    other = event(uid=make_uid(7, "discuss", "example.org"), summary="Discuss it")
    invites = build_invites(
        "REQUEST",
        [event(), other],
        organizer=ORGANIZER,
        attendee="maya@example.com",
        now=NOW,
    )

    uids = [str(parse(i.ics).walk("VEVENT")[0]["UID"]) for i in invites]
    assert uids == ["nudger.7.read-sbi@example.org", "nudger.7.discuss@example.org"]


def test_naive_start_is_refused():
    with pytest.raises(ValueError, match="naive"):
        invite(events=[event(start=datetime(2026, 3, 30, 10, 0))])


def test_uid_is_stable_and_distinct_per_enrolment_and_step():
    assert make_uid(7, "read-sbi", "example.org") == make_uid(7, "read-sbi", "example.org")
    assert make_uid(7, "read-sbi", "example.org") != make_uid(8, "read-sbi", "example.org")
    assert make_uid(7, "read-sbi", "example.org") != make_uid(7, "discuss", "example.org")


def test_uid_escapes_unusual_step_keys_without_collisions():
    one = make_uid(1, "a b", "example.org")
    two = make_uid(1, "a/b", "example.org")

    assert " " not in one and "/" not in two
    assert one != two
