"""The learner CSV import: every row valid or nothing written."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func
from sqlmodel import select

from nudger.models import AuditLog, Enrolment, ImportBatch, Person
from nudger.roster import ImportResult, import_roster, write_error_csv
from nudger.roster.checks import normal_email
from nudger.tick.run import tick
from tests.factories import make_enrolment, make_journey, make_person

HEADER = "email,name,manager_email,journey,start_date,timezone,country"


def roster(*rows: str, header: str = HEADER) -> bytes:
    """Build a CSV file as an admin would upload it."""
    return "\n".join([header, *rows, ""]).encode()


@pytest.fixture
def journey(session):
    return make_journey(session)


@pytest.fixture
def run(session, settings, now, journey):
    """Import bytes with the test's session, settings and clock."""

    def run(data: bytes, **kw) -> ImportResult:
        return import_roster(session, settings, io.BytesIO(data), now=now, **kw)

    return run


def count(session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def person(session, email: str) -> Person:
    return session.exec(select(Person).where(Person.email == email)).one()


def enrolment(session, email: str) -> Enrolment:
    query = select(Enrolment).join(Person).where(Person.email == email)
    return session.exec(query).one()


def where(result: ImportResult) -> list[tuple[int, str]]:
    return [(e.row, e.field) for e in result.errors]


def nothing_written(session) -> bool:
    return all(count(session, m) == 0 for m in (Person, Enrolment, ImportBatch, AuditLog))


# --- reading the file


def test_reads_a_bom_semicolons_and_crlf(run, session):
    data = "\ufeffemail;name;journey\r\nada@example.com;Ada Lovelace;giving-feedback\r\n"

    result = run(data.encode())

    assert result.ok, result.errors
    assert (result.rows, result.people_created, result.enrolments_created) == (1, 1, 1)
    assert person(session, "ada@example.com").name == "Ada Lovelace"


def test_reads_lines_ended_by_a_lone_cr(run):
    result = run(
        b"email,name,journey\rada@example.com,Ada,giving-feedback\rbob@example.com,Bob,giving-feedback\r"
    )

    assert result.ok, result.errors
    assert result.enrolments_created == 2


@pytest.mark.parametrize("column", ["Manager Email", "manager_email", "MANAGER-EMAIL"])
def test_matches_header_names_whatever_their_case_spaces_underscores_or_hyphens(
    run, session, column
):
    data = roster(
        "ada@example.com,Ada,grace@example.com,giving-feedback",
        header=f"E-mail,Name,{column},Journey",
    )

    assert run(data).ok
    grace = person(session, "grace@example.com")
    assert person(session, "ada@example.com").manager_id == grace.id


def test_joins_first_and_last_name(run, session):
    data = roster(
        "ada@example.com,Ada,Lovelace,giving-feedback", header="email,first_name,last_name,journey"
    )

    assert run(data).ok
    assert person(session, "ada@example.com").name == "Ada Lovelace"


def test_warns_about_an_unknown_column_and_ignores_it(run):
    result = run(
        roster("ada@example.com,Ada,giving-feedback,blue", header="email,name,journey,Colour")
    )

    assert result.ok
    assert [(w.row, w.field) for w in result.warnings] == [(1, "Colour")]


def test_rejects_a_file_without_an_email_column_in_one_error(run, session):
    result = run(roster("Ada,giving-feedback", "Bob,giving-feedback", header="name,journey"))

    assert where(result) == [(1, "")]
    assert "email column" in result.errors[0].message
    assert nothing_written(session)


def test_rejects_a_file_that_is_not_utf8(run, session):
    result = run("email,name,journey\nrené@example.com,René,giving-feedback\n".encode("latin-1"))

    assert where(result) == [(0, "")]
    assert "UTF-8 text (line 2 has the byte 0xE9)" in result.errors[0].message
    assert nothing_written(session)


@pytest.mark.parametrize(
    ("data", "says"),
    [(b"", "empty"), (b"\xef\xbb\xbf\r\n", "empty"), (b"email,name,journey\r\n", "no learners")],
)
def test_rejects_an_empty_file_or_a_header_alone(run, data, says):
    result = run(data)

    assert where(result) == [(0, "")]
    assert says in result.errors[0].message


def test_rejects_a_row_with_more_values_than_columns_alone(run):
    result = run(
        roster("ada@example.com,Lovelace, Ada,giving-feedback", header="email,name,journey")
    )

    assert where(result) == [(2, "")]
    assert "quote" in result.errors[0].message


def test_reads_a_file_by_path_and_records_its_name_and_checksum(
    session, settings, now, journey, tmp_path
):
    path = tmp_path / "march.csv"
    path.write_bytes(roster("ada@example.com,Ada,,giving-feedback"))

    result = import_roster(session, settings, str(path), now=now, actor="admin@example.com")

    batch = session.get(ImportBatch, result.batch_id)
    assert (batch.filename, batch.actor) == (str(path), "admin@example.com")
    assert len(batch.checksum) == 64


def test_to_json_holds_the_counts_errors_and_warnings(run):
    result = run(roster("ada@example.com,Ada,,giving-feedback", "bad,Bob,,giving-feedback"))

    data = result.to_json()

    assert (data["ok"], data["rows"], data["people_created"], data["batch_id"]) == (
        False,
        2,
        0,
        None,
    )
    assert data["errors"][0] == {
        "row": 3,
        "field": "email",
        "value": "bad",
        "message": result.errors[0].message,
    }


# --- row errors: each names its row and column


@pytest.mark.parametrize(
    ("row", "field", "says"),
    [
        ("not-an-address,Ada,,giving-feedback", "email", "not a valid email"),
        (",Ada,,giving-feedback", "email", "no email"),
        ("ada@example.com,,,giving-feedback", "name", "no name"),
        ("ada@example.com,Ada,boss@,giving-feedback", "manager_email", "not a valid email"),
        ("ada@example.com,Ada,,giving-feedback,,Mars/Olympus", "timezone", "time zone"),
        ("ada@example.com,Ada,,giving-feedback,,,XX", "country", "unknown country"),
        ("ada@example.com," + "A" * 201 + ",,giving-feedback", "name", "longer than 200"),
        ("ada@example.com,Ada,,giving-feedback,2027-02-30", "start_date", "YYYY-MM-DD"),
        ("ada@example.com,Ada,,giving-feedback,01/03/2027", "start_date", "YYYY-MM-DD"),
        ("ada@example.com,Ada,ADA@example.com,giving-feedback", "manager_email", "own manager"),
        ("ada@example.com,Ada,,", "journey", "no journey"),
    ],
)
def test_reports_a_bad_cell_at_its_row_and_column(run, session, row, field, says):
    result = run(roster("grace@example.com,Grace,,giving-feedback", row))

    assert where(result) == [(3, field)]
    assert says in result.errors[0].message
    assert nothing_written(session)


@pytest.mark.parametrize(
    ("row", "field", "code"),
    [
        ("ada@example.com,Ada\x00 Lovelace,,giving-feedback", "name", "U+0000"),
        ("ada@exam\x00ple.com,Ada,,giving-feedback", "email", "U+0000"),
        ("ada@example.com,Ada,grace@example.com\x1b,giving-feedback", "manager_email", "U+001B"),
        ("ada@example.com,Ada,,giving-feedback\x7f", "journey", "U+007F"),
        ("ada@example.com,Ada,,giving-feedback,2027-03-0\x08", "start_date", "U+0008"),
        ("ada@example.com,Ada,,giving-feedback,,Europe/\x85London", "timezone", "U+0085"),
        ("ada@example.com,Ada,,giving-feedback,,,G\x00B", "country", "U+0000"),
        ('ada@example.com,"Ada\nLovelace",,giving-feedback', "name", "U+000A"),
        ('ada@example.com,"Ada\rLovelace",,giving-feedback', "name", "U+000D"),
    ],
)
def test_rejects_a_control_character_in_a_cell_naming_its_column(run, session, row, field, code):
    result = run(roster(row))

    assert where(result) == [(2, field)]  # one error for the cell, not another for its value
    assert result.errors[0].message == f"contains a control character ({code}): remove it"
    assert "\x00" not in result.errors[0].value
    assert nothing_written(session)


def test_rejects_control_characters_in_first_and_last_name_columns(run, session):
    data = "email,first_name,last_name,manager_name,journey\n"
    data += "ada@example.com,Ada\x00,Love\x01lace,Grace\x02,giving-feedback\n"

    result = run(data.encode())

    assert where(result) == [(2, "first_name"), (2, "last_name"), (2, "manager_name")]
    assert nothing_written(session)


def test_keeps_a_tab_inside_a_cell(run, session):
    result = run(roster("ada@example.com,Ada\tLovelace,,giving-feedback"))

    assert result.ok, result.errors
    assert person(session, "ada@example.com").name == "Ada\tLovelace"


def test_rejects_a_control_character_in_a_column_name(run, session):
    result = run(b"email,na\x1bme,journey\nada@example.com,Ada,giving-feedback\n")

    assert (result.errors[0].row, result.errors[0].field) == (1, "na\\x1bme")
    assert "control character (U+001B)" in result.errors[0].message
    assert nothing_written(session)


def test_reports_an_unknown_journey_with_the_known_slugs(run, session):
    make_journey(session, slug="coaching")

    result = run(roster("ada@example.com,Ada,,giving-feeback"))

    assert where(result) == [(2, "journey")]
    assert "coaching, giving-feedback" in result.errors[0].message


def test_collects_every_error_and_writes_nothing(run, session):
    result = run(
        roster(
            "ada@example.com,Ada,,giving-feedback",
            "bad-address,Bob,,giving-feedback",
            "carl@example.com,Carl,,giving-feedback,someday,Nowhere/Town",
        )
    )

    assert where(result) == [(3, "email"), (4, "start_date"), (4, "timezone")]
    assert (result.people_created, result.enrolments_created, result.batch_id) == (0, 0, None)
    assert nothing_written(session)


def test_reports_a_duplicate_row_with_conflicting_data_naming_the_earlier_row(run):
    result = run(
        roster(
            "ada@example.com,Ada Lovelace,,giving-feedback",
            "grace@example.com,Grace,,giving-feedback",
            "ADA@example.com,Ada King,,giving-feedback",
        )
    )

    assert where(result) == [(4, "name")]
    assert "duplicate of row 2" in result.errors[0].message


def test_counts_an_identical_duplicate_row_once(run, session):
    result = run(
        roster("ada@example.com,Ada,,giving-feedback", "ada@example.com,Ada,,giving-feedback")
    )

    assert result.ok
    assert (result.rows, result.enrolments_created) == (2, 1)
    assert [(w.row, w.field) for w in result.warnings] == [(3, "email")]


def test_enrols_a_person_in_two_journeys_and_counts_a_repeat_in_each_once(run, session):
    make_journey(session, slug="coaching")
    rows = [
        "ada@example.com,Ada,,giving-feedback,2027-03-08",
        "ada@example.com,Ada,,coaching,2027-03-15",
        "ada@example.com,Ada,,coaching,",
        "ada@example.com,Ada,,giving-feedback,2027-03-08",
        "ada@example.com,Ada,,coaching,2027-03-22",  # disagrees with row 3's start
    ]

    result = run(roster(*rows))

    assert where(result) == [(6, "start_date")]
    assert "duplicate of row 3 for coaching" in result.errors[0].message
    result = run(roster(*rows[:-1]))
    assert result.ok
    assert (result.rows, result.enrolments_created, result.people_created) == (4, 2, 1)
    assert [(w.row, w.field) for w in result.warnings] == [(4, "email"), (5, "email")]
    starts = sorted(e.start_date for e in session.exec(select(Enrolment)))
    assert starts == [date(2027, 3, 8), date(2027, 3, 15)]


def test_reports_a_person_given_two_managers(run, session):
    make_journey(session, slug="coaching")

    result = run(
        roster(
            "ada@example.com,Ada,grace@example.com,giving-feedback",
            "ada@example.com,Ada,hopper@example.com,coaching",
        )
    )

    assert where(result) == [(3, "manager_email")]
    assert "row 2" in result.errors[0].message


def test_reports_a_manager_loop_in_the_file(run, session):
    result = run(
        roster(
            "ada@example.com,Ada,bob@example.com,giving-feedback",
            "bob@example.com,Bob,carl@example.com,giving-feedback",
            "carl@example.com,Carl,ada@example.com,giving-feedback",
        )
    )

    assert where(result) == [(2, "manager_email"), (3, "manager_email"), (4, "manager_email")]
    assert "manager loop" in result.errors[0].message
    assert nothing_written(session)


def test_reports_a_manager_loop_whose_other_row_has_an_unrelated_error(run, session):
    result = run(
        roster(
            "ada@example.com,Ada,bob@example.com,giving-feedback",
            "bob@example.com,Bob,ada@example.com,no-such-journey",
        )
    )

    assert where(result) == [(2, "manager_email"), (3, "journey"), (3, "manager_email")]
    assert "manager loop: ada@example.com → bob@example.com" in result.errors[0].message
    assert not any("not in the file" in w.message for w in result.warnings)
    assert nothing_written(session)


def test_reports_a_manager_loop_among_rows_that_all_have_other_errors(run, session):
    result = run(
        roster(
            "ada@example.com,Ada,bob@example.com,giving-feedback,,Mars/Olympus",
            "bob@example.com,Bob,ada@example.com,giving-feedback,,,XX",
        )
    )

    assert where(result) == [
        (2, "timezone"), (2, "manager_email"), (3, "country"), (3, "manager_email"),
    ]  # fmt: skip
    assert nothing_written(session)


def test_reports_a_loop_through_the_database_from_a_row_with_another_error(run, session):
    ada = make_person(session, "ada@example.com", "Ada")
    make_person(session, "bob@example.com", "Bob", manager=ada)

    result = run(roster("ada@example.com,Ada,bob@example.com,no-such-journey"))

    assert where(result) == [(2, "journey"), (2, "manager_email")]
    assert "manager loop" in result.errors[1].message


def test_reports_a_manager_loop_through_the_database(run, session):
    ada = make_person(session, "ada@example.com", "Ada")
    make_person(session, "bob@example.com", "Bob", manager=ada)

    result = run(roster("ada@example.com,Ada,bob@example.com,giving-feedback"))

    assert where(result) == [(2, "manager_email")]
    message = result.errors[0].message
    assert "ada@example.com → bob@example.com → ada@example.com" in message
    assert person(session, "ada@example.com").manager_id is None


# --- what a commit writes


def test_commits_people_enrolments_a_batch_and_an_audit_row(run, session, now, journey):
    result = run(roster("ada@example.com,Ada,,giving-feedback,2027-03-10,Europe/London,gb"))

    assert result.ok and result.batch_id is not None
    ada, enrolled = person(session, "ada@example.com"), enrolment(session, "ada@example.com")
    assert (ada.timezone, ada.country) == ("Europe/London", "GB")
    assert (enrolled.journey_id, enrolled.status, enrolled.start_date) == (
        journey.id,
        "active",
        date(2027, 3, 10),
    )
    # Her first step goes out at 09:00 London time on her start date: the tick looks then.
    first_send = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
    assert (enrolled.next_action_at, enrolled.import_batch_id) == (first_send, result.batch_id)
    batch = session.get(ImportBatch, result.batch_id)
    assert (batch.rows, batch.people_created, batch.enrolments_created) == (1, 1, 1)
    audit = session.exec(select(AuditLog)).one()
    assert (audit.action, audit.actor, audit.subject_id) == ("import", "cli", result.batch_id)
    assert (audit.detail["journeys"], audit.detail["people_created"]) == (["giving-feedback"], 1)


def test_stores_emails_lower_case_and_zones_as_spelled_by_iana(run, session):
    assert run(roster("Ada.Lovelace@Example.COM,Ada,,giving-feedback,,europe/london,gb")).ok

    ada = person(session, "ada.lovelace@example.com")
    assert (ada.timezone, ada.country) == ("Europe/London", "GB")


def test_uses_the_configured_zone_and_country_when_cells_are_blank(run, session, settings):
    settings.default_timezone, settings.default_country = "Europe/Paris", "FR"

    assert run(roster("ada@example.com,Ada,,giving-feedback")).ok

    ada = person(session, "ada@example.com")
    assert (ada.timezone, ada.country) == ("Europe/Paris", "FR")


def test_reimporting_the_same_file_changes_nothing(run, session):
    data = roster(
        "ada@example.com,Ada,grace@example.com,giving-feedback,2027-03-10,Europe/London,GB",
        "bob@example.com,Bob,ada@example.com,giving-feedback",
    )
    assert run(data).ok

    again = run(data)

    assert again.ok
    assert (again.people_created, again.people_updated, again.enrolments_created) == (0, 0, 0)
    assert (again.unchanged, again.batch_id) == (2, None)
    assert (count(session, ImportBatch), count(session, AuditLog)) == (1, 1)


def test_reimport_updates_a_changed_person_and_leaves_the_enrolment(run, session):
    assert run(roster("ada@example.com,Ada,,giving-feedback,2027-03-10")).ok

    again = run(roster("ada@example.com,Ada King,,giving-feedback,2027-03-10,Asia/Tokyo"))

    assert (again.people_updated, again.enrolments_created, again.unchanged) == (1, 0, 0)
    ada = person(session, "ada@example.com")
    assert (ada.name, ada.timezone) == ("Ada King", "Asia/Tokyo")
    assert count(session, Enrolment) == 1


def test_blank_cells_keep_what_the_database_has(run, session):
    ada = make_person(session, "ada@example.com", "Ada", timezone="Asia/Tokyo", country="JP")

    result = run(roster("ada@example.com,Ada,,giving-feedback"))

    assert (result.people_updated, result.enrolments_created) == (0, 1)
    session.refresh(ada)
    assert (ada.timezone, ada.country) == ("Asia/Tokyo", "JP")


def test_leaves_an_existing_enrolment_as_it_is(run, session, journey):
    ada = make_person(session, "ada@example.com", "Ada")
    make_enrolment(session, ada, journey, date(2027, 2, 1), status="withdrawn")

    result = run(roster("ada@example.com,Ada,,giving-feedback,,Europe/London,GB"))

    assert (result.enrolments_created, result.unchanged) == (0, 1)
    assert "withdrawn" in result.warnings[0].message
    assert enrolment(session, "ada@example.com").status == "withdrawn"


def test_dry_run_writes_nothing_and_reports_what_a_commit_would_do(run, session):
    data = roster(
        "ada@example.com,Ada,grace@example.com,giving-feedback",
        "bob@example.com,Bob,ada@example.com,giving-feedback",
    )

    preview = run(data, dry_run=True)

    assert preview.ok and preview.dry_run and preview.batch_id is None
    assert nothing_written(session)
    done = run(data)
    counts = ("people_created", "people_updated", "enrolments_created", "unchanged")
    assert [getattr(preview, c) for c in counts] == [getattr(done, c) for c in counts]
    assert (done.people_created, done.enrolments_created) == (3, 2)


# --- managers


def test_creates_a_manager_named_only_by_manager_email(run, session):
    data = roster(
        "ada@example.com,Ada,Grace@Example.com,Grace Hopper,giving-feedback",
        header="email,name,manager_email,manager_name,journey",
    )

    result = run(data)

    grace = person(session, "grace@example.com")
    assert (grace.name, person(session, "ada@example.com").manager_id) == ("Grace Hopper", grace.id)
    assert [(w.row, w.field) for w in result.warnings] == [(2, "manager_email")]
    assert "not in the file" in result.warnings[0].message
    assert count(session, Enrolment) == 1  # a manager is not enrolled


def test_links_a_manager_listed_later_in_the_file_without_a_warning(run, session):
    result = run(
        roster(
            "ada@example.com,Ada,grace@example.com,giving-feedback",
            "grace@example.com,Grace,,giving-feedback",
        )
    )

    assert result.ok and result.warnings == []
    assert person(session, "ada@example.com").manager_id == person(session, "grace@example.com").id


def test_links_a_manager_already_in_the_database_without_a_warning(run, session):
    grace = make_person(session, "grace@example.com", "Grace")

    result = run(roster("ada@example.com,Ada,grace@example.com,giving-feedback"))

    assert (result.people_created, result.warnings) == (1, [])
    assert person(session, "ada@example.com").manager_id == grace.id


# --- start dates


@pytest.mark.parametrize(
    ("given", "zone", "starts"),
    [
        ("2027-02-15", "Europe/London", date(2027, 3, 1)),  # 07:00 there: 09:00 still ahead
        ("2027-03-01", "Asia/Tokyo", date(2027, 3, 2)),  # 16:00 there: today's send is gone
    ],
)
def test_moves_a_past_start_to_the_next_send_slot_with_a_warning(run, session, given, zone, starts):
    result = run(roster(f"ada@example.com,Ada,,giving-feedback,{given},{zone}"))

    assert result.ok
    assert [(w.row, w.field, w.value) for w in result.warnings] == [(2, "start_date", given)]
    assert enrolment(session, "ada@example.com").start_date == starts


def test_keeps_a_start_date_whose_send_time_is_still_ahead(run, session):
    result = run(roster("ada@example.com,Ada,,giving-feedback,2027-03-01,Europe/London"))

    assert result.warnings == []
    assert enrolment(session, "ada@example.com").start_date == date(2027, 3, 1)


@pytest.mark.parametrize(
    ("zone", "country", "starts"),
    [
        ("Pacific/Auckland", "NZ", date(2027, 3, 2)),  # Monday 20:00 there: Tuesday
        ("America/Los_Angeles", "US", date(2027, 3, 1)),  # Sunday 23:00 there: Monday
    ],
)
def test_default_start_is_the_next_working_day_in_the_learners_zone(
    run, session, zone, country, starts
):
    assert run(roster(f"ada@example.com,Ada,,giving-feedback,,{zone},{country}")).ok

    assert enrolment(session, "ada@example.com").start_date == starts


def test_default_start_skips_the_learners_public_holidays(session, settings, journey, now):
    thursday_evening = now.replace(month=3, day=25, hour=20)  # Good Friday is a GB holiday
    data = roster(
        "ada@example.com,Ada,,giving-feedback,,Europe/London,GB",
        "bob@example.com,Bob,,giving-feedback,,Europe/Paris,FR",
    )

    assert import_roster(session, settings, data, now=thursday_evening).ok

    assert enrolment(session, "ada@example.com").start_date == date(2027, 3, 29)
    assert enrolment(session, "bob@example.com").start_date == date(2027, 3, 26)


# --- the journey for the whole file


def test_journey_option_fills_rows_without_one_and_the_column_wins(run, session, journey):
    coaching = make_journey(session, slug="coaching")
    data = roster(
        "ada@example.com,Ada,", "bob@example.com,Bob,coaching", header="email,name,journey"
    )

    assert run(data, journey_slug="giving-feedback").ok

    assert enrolment(session, "ada@example.com").journey_id == journey.id
    assert enrolment(session, "bob@example.com").journey_id == coaching.id


def test_journey_option_needs_no_journey_column(run):
    assert run(
        roster("ada@example.com,Ada", header="email,name"), journey_slug="giving-feedback"
    ).ok


def test_unknown_journey_option_is_one_file_level_error(run, session):
    result = run(
        roster("ada@example.com,Ada", "bob@example.com,Bob", header="email,name"),
        journey_slug="nope",
    )

    assert where(result) == [(0, "")]
    assert "giving-feedback" in result.errors[0].message
    assert nothing_written(session)


# --- the error file for the admin console


def test_error_csv_adds_an_error_column_and_defuses_formulas(run):
    data = roster(
        "ada@example.com,Ada,,giving-feedback",
        "bad-address,=cmd|' /C calc'!A0,,giving-feedback",
        "bob@example.com,+Bob,,giving-feedback,someday",
    )
    result = run(data)

    rows = list(csv.reader(io.StringIO(write_error_csv(result, data))))

    assert rows[0] == [*HEADER.split(","), "error"]
    assert [r[0] for r in rows[1:]] == ["bad-address", "bob@example.com"]
    assert rows[1][1] == "'=cmd|' /C calc'!A0"
    assert rows[2][1] == "'+Bob"
    assert rows[1][-1].startswith("email: not a valid email address")
    assert rows[2][-1].startswith("start_date: not a date")


def test_error_csv_keeps_the_files_separator(run):
    data = b"email;name;journey\r\nbad-address;Ada;giving-feedback\r\n"

    text = write_error_csv(run(data), data)

    assert text.splitlines()[0] == "email;name;journey;error"


# --- email addresses


@pytest.mark.parametrize(
    "address",
    [
        "Ada.Lovelace@Example.COM", "a+tag@x.co.uk", "o'brien@x.ie", "#!$%&*@x.io",
        "a..b@x.com", ".a@x.com", "a.@x.com", "a@x", "a@x.test", "a@localhost", "a@x..com",
        "a@-x.com", "a@x_y.com", "a@x.123", "a@@x.com", "@x.com", "a@", '"a b"@x.com',
        "ü@x.com", "a@bücher.de", "a" * 64 + "@x.com", "a" * 65 + "@x.com",
        "x" * 64 + "@" + ("b" * 60 + ".") * 3 + "com", "a@" + "b" * 64 + ".com",
    ],
)  # fmt: skip
def test_email_check_agrees_with_email_validator(address):
    try:
        expected = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        expected = None
    try:
        got = normal_email(address)
    except EmailNotValidError:
        got = None

    assert got == expected


# --- what the first tick after an import has left to do


def test_the_import_sets_the_next_action_the_first_tick_would(run, session, settings, now):
    """A big import must not leave the next tick every new enrolment to work out.

    The import writes each enrolment's first send time (or `now` when its first
    step is due already); a tick that works every one of them out again finds
    the same times, and sends the same step emails.
    """
    zones = [("Europe/London", "gb"), ("Asia/Tokyo", "jp"), ("America/New_York", "us"),
             ("Australia/Sydney", "au")]  # fmt: skip
    rows = [
        f"p{i}@example.com,P {i},,giving-feedback,{start},{tz},{country}"
        for i, ((tz, country), start) in enumerate(
            (z, s) for z in zones for s in ("", "2027-03-01", "2027-03-03", "2027-03-12")
        )
    ]
    assert run(roster(*rows)).ok
    imported = dict(session.exec(select(Enrolment.id, Enrolment.next_action_at)).all())
    assert all(at is not None and at >= now for at in imported.values())
    planned = session.exec(select(Enrolment.checkins_planned)).all()
    assert all(planned)  # the journey measures nothing: no check-ins to plan

    # The tick's own answer: every enrolment looked at, as the import used to leave them.
    for e in session.exec(select(Enrolment)).all():
        e.next_action_at = now
    session.commit()
    counts = tick(session, settings, now, enqueue=False)
    worked_out = dict(session.exec(select(Enrolment.id, Enrolment.next_action_at)).all())
    assert counts["enrolments"] == len(rows)
    for enrolment_id, at in imported.items():
        if at == now:
            assert worked_out[enrolment_id] > now  # its step went out at the tick
        else:
            assert worked_out[enrolment_id] == at


def test_after_an_import_the_next_tick_looks_only_at_what_is_due(run, session, settings, now):
    rows = [f"p{i}@example.com,P {i},,giving-feedback,,Europe/London,gb" for i in range(30)]
    rows.append("tokyo@example.com,T,,giving-feedback,2027-03-01,Asia/Tokyo,jp")
    assert run(roster(*rows)).ok

    first = min(session.exec(select(Enrolment.next_action_at)).all())

    quiet = tick(session, settings, now + timedelta(minutes=1), enqueue=False)
    due = tick(session, settings, first, enqueue=False)

    assert quiet.get("enrolments", 0) == 0 and quiet.get("step", 0) == 0
    assert due.get("enrolments") == due.get("step") == 1  # Tokyo's, the first to go out
