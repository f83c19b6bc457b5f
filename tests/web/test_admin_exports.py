"""CSV exports: spreadsheet formulas are neutralised, values otherwise kept."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest

from nudger.insights.exports import iter_csv, neutralise, to_csv
from tests.adminkit import admin_app, make_admin, redis, sign_in
from tests.factories import make_enrolment, make_journey, make_person

__all__ = ["redis"]


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_a_spreadsheet_would_run_gets_an_apostrophe(cell):
    assert neutralise(cell) == "'" + cell


def test_ordinary_cells_are_left_alone():
    assert neutralise("ada@example.com") == "ada@example.com"
    assert neutralise(3) == "3"
    assert neutralise(None) == ""
    assert neutralise(date(2027, 3, 1)) == "2027-03-01"
    assert neutralise(datetime(2027, 3, 1, 9, 5, tzinfo=UTC)) == "2027-03-01 09:05:00"


def test_the_csv_starts_with_a_bom_and_round_trips():
    text = to_csv(["a", "b"], [["x, y", 'say "hi"'], ["=cmd()", 2]])
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows == [["a", "b"], ["x, y", 'say "hi"'], ["'=cmd()", "2"]]


def test_a_long_export_is_streamed_in_chunks():
    chunks = list(iter_csv(["n"], ([i] for i in range(1200))))
    assert len(chunks) == 3
    assert "".join(chunks).count("\r\n") == 1201


def test_an_exported_name_beginning_with_equals_is_neutralised(settings, session, now, redis):
    journey = make_journey(session)
    evil = make_person(session, "eve@example.com", '=HYPERLINK("http://evil.example","Click")')
    make_enrolment(session, evil, journey, now.date())
    make_admin(session, now)
    client = admin_app(settings, now).test_client()
    sign_in(client)
    response = client.get("/admin/enrolments.csv")
    assert response.headers["Content-Disposition"] == "attachment; filename=nudger-enrolments.csv"
    [row] = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert row["name"] == '\'=HYPERLINK("http://evil.example","Click")'
    assert row["email"] == "eve@example.com"
