"""Schemathesis against the running app: every operation, bounded examples, every check."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.apikit import make_token
from tests.factories import make_enrolment, make_journey, make_person
from tests.pagekit import live_server

# A request can match the schema and still fail the import's own checks (an unknown
# journey, a time zone that does not exist): 422 is the right answer to it then.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = [200, 401, 403, 404, 409, 422, 429]
"""


@pytest.mark.slow
def test_every_operation_answers_as_its_schema_says(settings, engine, session, now, tmp_path):
    journey = make_journey(session)
    for i in range(3):
        make_enrolment(session, make_person(session, f"p{i}@example.com"), journey, now.date())
    token = make_token(session, now)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    unlimited = dataclasses.replace(settings, api_rate_limit=1_000_000)
    with live_server(unlimited, now) as (base, _app):
        run = subprocess.run(
            [str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run",
             f"{base}/api/v1/openapi.json", "--checks", "all", "--max-examples", "10",
             "--seed", "17", "-H", f"Authorization: Bearer {token}", "--no-color"],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert "10 selected / 10 total" in report or "Operations:" in report
