"""Any file given to the CSV import gives a result, located errors, and no half-writes."""

from __future__ import annotations

import csv
import io
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update
from sqlmodel import Session

from nudger.models import AuditLog, Enrolment, Event, ImportBatch, Person
from nudger.roster import COLUMNS, ImportResult, import_roster
from nudger.text import CONTROL
from tests.factories import make_journey

pytestmark = pytest.mark.fuzz

# Each example restores the database it found, so the function-scoped fixtures stay valid.
shared_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

WRITTEN = (Person, Enrolment, ImportBatch, AuditLog)


@pytest.fixture
def importer(engine, settings, now):
    """Import bytes in a session of their own; return the result and whether rows changed."""
    with Session(engine) as session:
        make_journey(session)
        make_journey(session, slug="coaching")
        session.commit()

    def counts() -> list[int]:
        with engine.connect() as conn:
            return [conn.execute(select(func.count()).select_from(m)).scalar() for m in WRITTEN]

    def run(data: bytes, journey_slug: str | None = None) -> ImportResult:
        before = counts()
        with Session(engine, expire_on_commit=False) as session:
            result = import_roster(
                session, settings, io.BytesIO(data), journey_slug=journey_slug, now=now
            )
        check(result, data)
        event("accepted" if result.ok else "rejected")
        if not result.ok:
            assert counts() == before, "a rejected file wrote something"
        else:
            with engine.begin() as conn:
                names = conn.execute(select(Person.__table__.c.name)).scalars()
                assert not any(CONTROL.search(n.replace("\t", "")) for n in names)
                conn.execute(delete(Event.__table__))  # they name the enrolments
                conn.execute(delete(Enrolment.__table__))
                conn.execute(delete(AuditLog.__table__))
                conn.execute(delete(ImportBatch.__table__))
                conn.execute(update(Person.__table__).values(manager_id=None))
                conn.execute(delete(Person.__table__))
        return result

    return run


def check(result: ImportResult, data: bytes) -> None:
    """Every error and warning is located, and safe to print."""
    records = len(re.split(rb"\r\n|\r|\n", data)) + 1
    for problem in [*result.errors, *result.warnings]:
        assert isinstance(problem.row, int) and 0 <= problem.row <= records, problem
        assert problem.message, problem
        if problem.row >= 2:  # a data row: the column is one the import knows, or none
            assert problem.field in (*COLUMNS, ""), problem
        shown = problem.field + problem.message + problem.value
        assert not CONTROL.search(shown.replace("\t", "")), problem  # a tab is allowed


@shared_fixtures
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_result_or_located_errors(importer, data):
    importer(data)


@shared_fixtures
@given(st.binary(max_size=500))
def test_any_bytes_after_a_valid_header_give_a_result_or_located_errors(importer, data):
    importer(b"email,name,manager_email,journey,start_date,timezone,country\n" + data)


HEADERS = [*COLUMNS, "E-mail", "Full Name", "tz", "journey_slug", "notes", "", "email", "na\x00me"]
CELLS = {
    "email": ["a@example.com", "b@example.com", "c@example.com", "A@EXAMPLE.COM", "bad", "",
              "a@exam\x00ple.com", "x@[127.0.0.1]", '"quoted"@example.com', "ü@exämple.com",
              "a" * 70 + "@example.com"],
    "name": ["Ada", "", "Ada\x00", "Ada\tLovelace", "A" * 201, "=HYPERLINK(1)", "Ada\nLovelace",
             "😀", " Ada "],
    "manager_email": ["a@example.com", "b@example.com", "c@example.com", "", "boss@", "\x1b"],
    "journey": ["giving-feedback", "coaching", "GIVING-FEEDBACK", "nope", "", "coaching\x7f"],
    "start_date": ["2027-03-04", "2027-02-30", "04/03/2027", "", "2020-01-01", "9999-12-31",
                   "2027-03-0\x08", "\uff10\uff10\uff10\uff11-01-01"],
    "timezone": ["Europe/London", "europe/paris", "Mars/Olympus", "", "UTC", "Europe/\x85London"],
    "country": ["GB", "fr", "XX", "", "GB\x00", "GBR" * 10],
}  # fmt: skip
# Values that agree whichever rows they meet in, so a clean file is accepted.
VALID = {
    "email": [f"{name}@example.com" for name in "abdefghi"],
    "name": ["Ada\tLovelace"],
    "manager_email": ["", "boss@example.com"],
    "journey": ["giving-feedback", "coaching"],
    "start_date": ["", "2027-03-04"],
    "timezone": ["", "Europe/London"],
    "country": ["", "GB"],
}
ALIASES = {"E-mail": "email", "Full Name": "name", "tz": "timezone", "journey_slug": "journey"}


@st.composite
def rosters(draw) -> bytes:
    """A learner CSV as spreadsheets write them, with tricky cells and a few stray bytes."""
    usual = ["email", "name", "manager_email", "journey", "start_date", "timezone", "country"]
    header = draw(st.just(usual) | st.lists(st.sampled_from(HEADERS), min_size=1, max_size=8))
    columns = [ALIASES.get(h, h) for h in header]
    valid = [st.sampled_from(VALID.get(c, [""])) for c in columns]
    tricky = [
        st.sampled_from(CELLS.get(c, ["", "x", "\x00"])) | st.text(max_size=6) for c in columns
    ]
    # Half the files have only valid values, so that some are accepted and written.
    clean = draw(st.booleans())
    cells = valid if clean else [v | t for v, t in zip(valid, tricky, strict=True)]
    rows = draw(st.lists(st.tuples(*cells), max_size=8))
    delimiter = draw(st.sampled_from([",", ";"]))
    out = io.StringIO()
    writer = csv.writer(
        out, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])),
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
    )  # fmt: skip
    writer.writerow(header)
    for row in rows:
        extra = [] if clean else draw(st.sampled_from([[], [""], ["x"]]))  # shifted values
        writer.writerow([*row, *extra])
    data = (draw(st.sampled_from(["", "\ufeff"])) + out.getvalue()).encode()
    for _ in range(0 if clean else draw(st.integers(0, 2))):  # a stray NUL, quote, non-UTF-8
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\x00", b'"', b"\xff", b"\n", b";"])) + data[at:]
    return data


@shared_fixtures
@given(rosters(), st.sampled_from([None, "giving-feedback", "nope"]))
def test_a_nearly_valid_roster_gives_a_result_or_located_errors(importer, data, journey):
    importer(data, journey)
