"""The `nudger ratings` summary as a table or CSV (JSON is `JourneyFigures.to_json`)."""

from __future__ import annotations

import csv
import io

from nudger.insights.exports import neutralise
from nudger.measure.results import MIN_PAIRS, JourneyFigures

HEADER = ["journey", "behaviour", "text", "rater", "pairs", "start", "latest", "shift", "improved"]


def _num(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.2f}"


def as_table(journeys: list[JourneyFigures]) -> str:
    """Return a fixed-width summary: per journey and behaviour, a line per rater, then rates."""
    if not journeys:
        return "No journey measures its goal."
    lines = []
    for j in journeys:
        lines += [f"{j.slug}: {j.title}", ""]
        lines.append(f"  {'behaviour / rater':<44} {'pairs':>5} {'start':>6} {'latest':>6} "
                     f"{'shift':>6} {'improved':>8}")  # fmt: skip
        for b in j.behaviours:
            lines.append(f"  {b.text[:70]}")
            for rater, f in b.raters.items():
                lines.append(
                    f"    {rater:<42} {f.pairs:>5} {_num(f.start):>6} {_num(f.latest):>6} "
                    f"{_num(f.shift):>6} {_num(f.improved, True):>8}"
                )
        lines.append("")
        lines.append("  response rates: " + "; ".join(
            f"{c}: " + ", ".join(
                f"{r} {cell['answered']}/{cell['sent']}"
                + (f" ({cell['no_manager']} no manager)" if cell["no_manager"] else "")
                for r, cell in by_rater.items()
            )
            for c, by_rater in j.response_rates.items()
        ))  # fmt: skip
        lines.append("")
    lines.append(f"Means are shown from {MIN_PAIRS} pairs (a start and a later answer).")
    return "\n".join(lines)


def as_csv(journeys: list[JourneyFigures]) -> str:
    """Return one CSV line per journey, behaviour and rater (text cells defused)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for j in journeys:
        for b in j.behaviours:
            for rater, f in b.raters.items():
                figures = f.to_json()
                writer.writerow(
                    [neutralise(j.slug), neutralise(b.key), neutralise(b.text), rater]
                    + ["" if figures[k] is None else figures[k] for k in HEADER[4:]]
                )
    return out.getvalue()
