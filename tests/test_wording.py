"""One wording for counts and lateness: plural forms, the glossary, no hand-made plurals."""

from __future__ import annotations

import re
from pathlib import Path

from nudger import wording
from nudger.config import ROOT
from nudger.roster.result import ImportResult, RowError


def errors(*rows: int) -> ImportResult:
    return ImportResult(rows=5, errors=[RowError(row, "email", "", "bad") for row in rows])


def test_an_error_summary_counts_the_rows_with_errors_not_the_rows_read():
    assert errors(2, 3, 3, 4, 5).error_summary() == "5 errors in 4 rows"
    assert errors(3).error_summary() == "1 error in 1 row"
    assert errors(1).error_summary() == "1 error in the header"
    assert errors(0, 2).error_summary() == "2 errors in the file and 1 row"


def test_counts_and_lateness_are_singular_for_one():
    assert wording.ngettext("%(num)d warning", "%(num)d warnings", 1) == "1 warning"
    assert wording.ngettext("%(num)d warning", "%(num)d warnings", 0) == "0 warnings"
    assert wording.days_overdue(1) == "1 working day overdue"
    assert wording.days_overdue(3) == "3 working days overdue"
    assert wording.days_overdue(0) == "less than a working day overdue"
    assert wording.behind_by(1) == "behind by 1 working day"


def test_no_template_or_module_makes_a_plural_by_hand():
    hand_made = re.compile(r"""["']s["'] if |["']es["'] if |\|plural\(|'s' if .* != 1""")
    files = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("templates/**/*.txt")]
    files += [p for p in ROOT.glob("nudger/**/*.py") if p.name != "wording.py"]
    offenders = [str(p.relative_to(ROOT)) for p in files if hand_made.search(Path(p).read_text())]
    assert offenders == []
