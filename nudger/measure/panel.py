"""The admin dashboard's Behaviour change panel, and the export of every rating."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from markupsafe import Markup
from sqlmodel import Session, select

from nudger.insights.charts import scale_bars
from nudger.journeys.spec import SCALE, JourneySpec
from nudger.measure.results import MIN_PAIRS, BehaviourFigures, JourneyFigures, journey_figures
from nudger.models import Enrolment, Journey, Person, Rating

ANSWERS = [*SCALE, "No chance to observe"]
RATING_HEADER = [
    "journey", "email", "name", "behaviour", "behaviour_text", "behaviour_removed",
    "rater", "checkpoint", "value", "answer", "recorded_at",
]  # fmt: skip


@dataclass
class BehaviourPanel:
    """One behaviour on the panel: its figures and a chart per rater."""

    figures: BehaviourFigures
    charts: dict[str, Markup]
    latest_label: str
    added_later: bool
    gap_at: str = ""  # when the self-manager pairs are from, in words


@dataclass
class Panel:
    """A journey's Behaviour change panel."""

    figures: JourneyFigures
    behaviours: list[BehaviourPanel]
    min_pairs: int = MIN_PAIRS


def _label(order: int) -> str:
    return {0: "Start", 1: "End"}.get(order, f"{order - 1} days after")


def _at(order: int) -> str:
    return {0: "at the start", 1: "at the end"}.get(order, f"{order - 1} days after the end")


def behaviour_panel(session: Session, journey: Journey) -> Panel | None:
    """Return the panel of a journey that measures its goal (None when it does not)."""
    if not journey.spec.get("measure"):
        return None
    figures = journey_figures(session, journey)
    most_starts = max((b.start_answers() for b in figures.behaviours), default=0)
    shown = []
    for b in figures.behaviours:
        charts = {}
        latest_order = 0
        for rater, by_order in sorted(b.distribution.items()):
            later = [o for o in by_order if o > 0]
            latest_order = max([latest_order, *later])
            who = {"learner": "Learners", "manager": "Managers"}.get(rater, rater)
            rows = [(f"{who}: start", _counts(by_order.get(0, {})))]
            if later:
                rows.append((f"{who}: {_label(max(later)).lower()}", _counts(by_order[max(later)])))
            charts[rater] = scale_bars(
                f"{journey.slug}-{b.key}-{rater}",
                f"{b.text}: answers from {rater}s at the start and the latest checkpoint",
                ANSWERS,
                rows,
            )
        shown.append(
            BehaviourPanel(
                figures=b,
                charts=charts,
                latest_label=_label(latest_order) if latest_order else "",
                # Fewer status quos than the others had: it joined the goal after some started.
                added_later=most_starts > 0 and b.start_answers() < most_starts // 2,
                gap_at=_at(b.gap_order),
            )
        )
    return Panel(figures=figures, behaviours=shown)


def _counts(by_value: dict[int, int]) -> list[int]:
    """Order counts as ANSWERS: values 1..5, then no chance (stored as 0)."""
    return [by_value.get(v, 0) for v in range(1, len(SCALE) + 1)] + [by_value.get(0, 0)]


def rating_rows(session: Session, journey: Journey) -> Iterator[tuple]:
    """Yield every rating of a journey for the CSV, removed behaviours' too."""
    texts = {b.key: b.text for b in JourneySpec.model_validate(journey.spec).behaviours()}
    query = (
        select(Rating, Person.email, Person.name)
        .join(Enrolment, Enrolment.id == Rating.enrolment_id)
        .join(Person, Person.id == Enrolment.person_id)
        .where(Rating.journey_id == journey.id)
        .order_by(Rating.enrolment_id, Rating.checkpoint_order, Rating.rater, Rating.behaviour)
        .execution_options(yield_per=2000)
    )
    for r, email, name in session.exec(query):
        yield (
            journey.slug,
            email,
            name,
            r.behaviour,
            texts.get(r.behaviour, ""),
            "yes" if r.behaviour not in texts else "no",
            r.rater,
            r.checkpoint,
            "" if r.value is None else r.value,
            SCALE[r.value - 1] if r.value else "No chance to observe",
            r.recorded_at,
        )
