"""What an import hands back: the problems it found, row by row, and its counts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nudger.wording import gettext, ngettext


@dataclass(frozen=True)
class RowError:
    """A problem a person can act on; row 1 is the header, row 0 the whole file."""

    row: int
    field: str
    value: str
    message: str


@dataclass
class ImportResult:
    """What an import read, found wrong, and did (or, in a dry run, would do).

    A rejected file did nothing, so its counts stay 0 apart from `rows`.
    """

    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    people_created: int = 0
    people_updated: int = 0
    enrolments_created: int = 0
    unchanged: int = 0
    dry_run: bool = False
    batch_id: int | None = None

    @property
    def ok(self) -> bool:
        """Say whether the file was accepted."""
        return not self.errors

    def error_summary(self) -> str:
        """Say how many errors in which places: "5 errors in 4 rows", "1 error in the header"."""
        places = []
        if any(e.row == 0 for e in self.errors):
            places.append(gettext("the file"))
        if any(e.row == 1 for e in self.errors):
            places.append(gettext("the header"))
        bad_rows = len({e.row for e in self.errors if e.row > 1})
        if bad_rows:
            places.append(ngettext("%(num)d row", "%(num)d rows", bad_rows))
        return ngettext(
            "%(num)d error in %(places)s",
            "%(num)d errors in %(places)s",
            len(self.errors),
            places=gettext(" and ").join(places),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the result as one JSON-ready dict (the CLI's `--json`)."""
        names = ("rows", "people_created", "people_updated", "enrolments_created", "unchanged")
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "batch_id": self.batch_id,
            **{name: getattr(self, name) for name in names},
            "errors": [asdict(e) for e in self.errors],
            "warnings": [asdict(w) for w in self.warnings],
        }
