"""Charts drawn on the server as SVG: no scripts, no CDN, readable by screen readers.

Every chart has a <title> and <desc>, and every bar carries its numbers as
text, so the chart says the same thing without its shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

WIDTH = 720
LABEL_MIN, LABEL_MAX = 120, 320  # the label column, as wide as the longest label needs
ROW_H = 30
BAR_H = 18
INK, MUTED, LINE = "#1d2433", "#5b6475", "#d9dee7"
WARN_INK = "#a05a00"  # amber dark enough for small text on white (WCAG AA, 4.5:1)
COLOURS = {
    "done": "#1f7a4d",
    "sent": "#b8d8c6",
    "on_track": "#1f7a4d",
    "behind": "#d08a1e",
    "overdue": "#b3261e",
    "paused": "#8a93a6",
    "completed": "#2f5bd3",
    "bar": "#2f5bd3",
    "stall": "#b3261e",
}
_ID = re.compile(r"[^a-z0-9-]+")


def _open(chart_id: str, title: str, desc: str, height: int) -> str:
    cid = _ID.sub("-", chart_id.lower())
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-labelledby="{cid}-t {cid}-d" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="13">'
        f'<title id="{cid}-t">{escape(title)}</title><desc id="{cid}-d">{escape(desc)}</desc>'
    )


# Glyph widths in em, rounded up from DejaVu Sans, the widest of the usual
# fallbacks for system-ui: a label that fits in it fits in the others.
_NARROW = frozenset("'ijlIJ .,:;/\\|!\u2019\u00b7")
_SEMI = frozenset('ftr-()[]"')
_WIDE = frozenset("mwMW@%&#+<=>^~—…")


def text_width(text: str, size: float = 13) -> float:
    """Return a generous estimate of the width of `text` in pixels at font size `size`."""
    em = 0.0
    for ch in text:
        if ch in _NARROW:
            em += 0.34
        elif ch in _SEMI:
            em += 0.42
        elif ch in _WIDE or ord(ch) >= 0x2E80:  # CJK and the like are full width
            em += 1.0
        elif ch.isupper():
            em += 0.8
        else:
            em += 0.65
    return em * size


def fit(label: str, width: float, size: float = 13) -> str:
    """Return `label`, cut at the end with an ellipsis if it is wider than `width` pixels."""
    if text_width(label, size) <= width:
        return label
    while label and text_width(label + "…", size) > width:
        label = label[:-1]
    return label.rstrip() + "…"


def _label_column(labels: Sequence[str]) -> float:
    """Return the width of the column for `labels`: what the longest needs, within bounds."""
    widest = max((text_width(label) for label in labels), default=0)
    return math.ceil(min(max(widest + 16, LABEL_MIN), LABEL_MAX))


def _label(label: str, column: float) -> str:
    # Right-aligned against the bars; the group's <title> carries it in full.
    return fit(label, column - 16)


def _empty(chart_id: str, title: str, message: str) -> Markup:
    body = f'<text x="0" y="24" fill="{MUTED}">{escape(message)}</text></svg>'
    return Markup(_open(chart_id, title, message, 40) + body)


def funnel(
    chart_id: str, title: str, steps: Sequence[tuple[str, int, int]], enrolled: int
) -> Markup:
    """Draw one bar per step: how many were sent it (light) and did it (dark), of `enrolled`."""
    if not steps or not enrolled:
        return _empty(chart_id, title, "Nobody is enrolled yet.")
    desc = "; ".join(f"{label}: {done} done, {sent} sent" for label, sent, done in steps)
    height = ROW_H * len(steps) + 10
    parts = [_open(chart_id, title, f"Of {enrolled} enrolled. {desc}", height)]
    label_w = _label_column([label for label, _, _ in steps])
    counts = [
        f"{done} done ({round(100 * done / enrolled)}%) · {sent} sent" for _, sent, done in steps
    ]
    # The counts' column as wide as its longest text needs: a fixed 150 cut off
    # "11 done (85%) · 13 sent" at the chart's right edge.
    bar_w = WIDTH - label_w - max(150, math.ceil(max(text_width(c) for c in counts)) + 12)
    sent_fill, done_fill = COLOURS["sent"], COLOURS["done"]
    for i, (label, sent, done) in enumerate(steps):
        y = i * ROW_H + 6
        sent_w = round(bar_w * min(sent, enrolled) / enrolled, 1)
        done_w = round(bar_w * min(done, enrolled) / enrolled, 1)
        parts.append(
            f"<g><title>{escape(label)}: {done} done, {sent} sent of {enrolled}</title>"
            f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end" fill="{INK}">'
            f"{escape(_label(label, label_w))}</text>"
            f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="{BAR_H}" fill="#eef1f6"/>'
            f'<rect x="{label_w}" y="{y}" width="{sent_w}" height="{BAR_H}" fill="{sent_fill}"/>'
            f'<rect x="{label_w}" y="{y}" width="{done_w}" height="{BAR_H}" fill="{done_fill}"/>'
            f'<text x="{label_w + bar_w + 8}" y="{y + 13}" fill="{INK}">{counts[i]}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def hbars(
    chart_id: str, title: str, items: Sequence[tuple[str, float, str]], colour: str = "bar"
) -> Markup:
    """Draw labelled horizontal bars; each item is (label, value, the value as text)."""
    if not items or not any(v for _, v, _ in items):
        return _empty(chart_id, title, "Nothing to show yet.")
    top = max(v for _, v, _ in items) or 1
    desc = "; ".join(f"{label}: {text}" for label, _, text in items)
    height = ROW_H * len(items) + 10
    parts = [_open(chart_id, title, desc, height)]
    label_w = _label_column([label for label, _, _ in items])
    bar_w = WIDTH - label_w - 170
    fill = COLOURS.get(colour, colour)
    for i, (label, value, text) in enumerate(items):
        y = i * ROW_H + 6
        w = round(bar_w * value / top, 1)
        parts.append(
            f"<g><title>{escape(label)}: {escape(text)}</title>"
            f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end" fill="{INK}">'
            f"{escape(_label(label, label_w))}</text>"
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{BAR_H}" fill="{fill}"/>'
            f'<text x="{label_w + w + 8}" y="{y + 13}" fill="{INK}">{escape(text)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked(chart_id: str, title: str, counts: Sequence[tuple[str, str, int]]) -> Markup:
    """Draw one bar split by category; each item is (key for the colour, label, count)."""
    total = sum(c for _, _, c in counts)
    if not total:
        return _empty(chart_id, title, "Nobody is enrolled yet.")
    desc = ", ".join(f"{label}: {c}" for _, label, c in counts)
    parts = [_open(chart_id, title, desc, 74)]
    x = 0.0
    for key, label, c in counts:
        w = WIDTH * c / total
        if w:
            parts.append(
                f'<rect x="{x:.1f}" y="4" width="{w:.1f}" height="26" '
                f'fill="{COLOURS.get(key, MUTED)}"><title>{escape(label)}: {c}</title></rect>'
            )
        x += w
    lx = 0
    for key, label, c in counts:
        parts.append(
            f'<rect x="{lx}" y="44" width="12" height="12" fill="{COLOURS.get(key, MUTED)}"/>'
            f'<text x="{lx + 17}" y="55" fill="{INK}">{escape(label)}: {c}</text>'
        )
        lx += 17 + 8 * (len(label) + len(str(c)) + 2) + 14
    parts.append("</svg>")
    return Markup("".join(parts))


def _ticks(top: int, most: int = 5) -> list[int]:
    """Return round tick values from 0 to at least `top`, at most `most` + 1 of them."""
    step = 1
    while top / step > most:
        for factor in (2, 2.5, 2):  # 1, 2, 5, 10, 20, 50...
            step = int(step * factor)
            if top / step <= most:
                break
    return list(range(0, -(-top // step) * step + 1, step))


def daily(chart_id: str, title: str, points: Sequence[tuple[date, int]]) -> Markup:
    """Draw a count per day as columns on a left axis, with the running total on a right one."""
    if not points or not any(v for _, v in points):
        return _empty(chart_id, title, "No steps completed in this period.")
    height, left, right, bottom, top_pad = 250, 64, 72, 50, 16
    plot_w, plot_h = WIDTH - left - right, height - bottom - top_pad
    peak = max(v for _, v in points)
    total = sum(v for _, v in points)
    counts, totals = _ticks(peak), _ticks(total)
    desc = (
        f"{total} steps completed from {points[0][0]} to {points[-1][0]}; "
        f"busiest day {max(points, key=lambda p: p[1])[0]} with {peak}."
    )
    parts = [_open(chart_id, title, desc, height)]
    col = plot_w / len(points)
    base = top_pad + plot_h
    end = left + plot_w

    def y(value: float, scale: list[int]) -> float:
        return round(base - plot_h * value / scale[-1], 1)

    # Gridlines and labels: counts per day on the left, the running total on the right.
    for value in counts:
        parts.append(
            f'<line x1="{left}" y1="{y(value, counts)}" x2="{end}" y2="{y(value, counts)}" '
            f'stroke="{LINE if value else MUTED}"/>'
            f'<text x="{left - 6}" y="{y(value, counts) + 4}" text-anchor="end" '
            f'fill="{MUTED}">{value}</text>'
        )
    for value in totals:
        parts.append(
            f'<text x="{end + 6}" y="{y(value, totals) + 4}" fill="{COLOURS["done"]}">'
            f"{value}</text>"
        )
    mid = top_pad + plot_h / 2
    parts.append(
        f'<text transform="translate(14 {mid:.1f}) rotate(-90)" text-anchor="middle" '
        f'fill="{INK}">Steps done per day</text>'
        f'<text transform="translate({WIDTH - 8} {mid:.1f}) rotate(90)" text-anchor="middle" '
        f'fill="{COLOURS["done"]}">Running total</text>'
    )
    running, line = 0, []
    for i, (day, value) in enumerate(points):
        x = left + i * col
        running += value
        line.append(f"{x + col / 2:.1f},{y(running, totals)}")
        if value:
            top = y(value, counts)
            parts.append(
                f'<rect x="{x + col * 0.1:.1f}" y="{top}" width="{col * 0.8:.1f}" '
                f'height="{base - top:.1f}" fill="{COLOURS["bar"]}">'
                f"<title>{day:%a} {day.day} {day:%b}: {value}</title></rect>"
            )
    parts.append(
        f'<polyline points="{" ".join(line)}" fill="none" stroke="{COLOURS["done"]}" '
        f'stroke-width="2"><title>Running total: {total}</title></polyline>'
    )
    # A date under every day if they fit, else every other day, else every week.
    room = text_width("30 Sep", 12) + 8
    every = next((n for n in (1, 2, 7) if col * n >= room), 14)
    for i in range(0, len(points), every):
        x = left + i * col + col / 2
        parts.append(
            f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="{MUTED}"/>'
            f'<text x="{x:.1f}" y="{base + 18}" text-anchor="middle" fill="{MUTED}" '
            f'font-size="12">{points[i][0].day} {points[i][0]:%b}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" '
        f'fill="{INK}">Date (UTC)</text></svg>'
    )
    return Markup("".join(parts))


def timeline(
    chart_id: str,
    title: str,
    steps: Sequence[tuple[str, int, int]],
    reminders: Sequence[int],
    escalations: Sequence[tuple[int, str]],
) -> Markup:
    """Draw each step (label, send day, due after) on a working-day axis, with its chasers.

    The bar runs from the day the step is sent to its due day; ticks mark the
    reminders (R) and escalations (M manager, S skip level, A admin) after that.
    """
    if not steps:
        return _empty(chart_id, title, "This journey has no steps.")
    chase = max([*reminders, *(a for a, _ in escalations), 0])
    span = max(day + due + chase for _, day, due in steps) or 1
    left, right, axis_h = _label_column([label for label, _, _ in steps]), 24, 30
    plot_w = WIDTH - left - right
    height = ROW_H * len(steps) + axis_h + 10

    def x(day: float) -> float:
        return round(left + plot_w * day / span, 1)

    desc = "; ".join(
        f"{label}: sent on working day {day}, due {due} working days later"
        for label, day, due in steps
    )
    letters = {"manager": "M", "skip_level": "S", "admin": "A"}
    parts = [_open(chart_id, title, desc, height)]
    for i, (label, day, due) in enumerate(steps):
        y = i * ROW_H + 6
        parts.append(
            f"<g><title>{escape(label)}: day {day}, due day {day + due}</title>"
            f'<text x="{left - 8}" y="{y + 13}" text-anchor="end" fill="{INK}">'
            f"{escape(_label(label, left))}</text>"
            f'<line x1="{left}" y1="{y + 9}" x2="{WIDTH - right}" y2="{y + 9}" stroke="#eef1f6"/>'
            f'<rect x="{x(day)}" y="{y + 3}" width="{max(x(day + due) - x(day), 3)}" height="12" '
            f'rx="3" fill="{COLOURS["bar"]}"/>'
            f'<circle cx="{x(day)}" cy="{y + 9}" r="5" fill="{COLOURS["done"]}"/></g>'
        )
        for after in reminders:
            parts.append(
                f'<text x="{x(day + due + after)}" y="{y + 13}" text-anchor="middle" '
                f'fill="{WARN_INK}" font-size="11">R<title>reminder {after} working '
                f"days after due</title></text>"
            )
        for after, notify in escalations:
            parts.append(
                f'<text x="{x(day + due + after)}" y="{y + 13}" text-anchor="middle" '
                f'fill="{COLOURS["overdue"]}" font-size="11" font-weight="700">'
                f"{letters.get(notify, '!')}<title>{escape(notify.replace('_', ' '))} told "
                f"{after} working days after due</title></text>"
            )
    base = ROW_H * len(steps) + 10
    end = WIDTH - right
    parts.append(f'<line x1="{left}" y1="{base}" x2="{end}" y2="{base}" stroke="{LINE}"/>')
    step = 5 if span <= 60 else 10
    for day in range(0, span + 1, step):
        parts.append(
            f'<text x="{x(day)}" y="{base + 16}" text-anchor="middle" fill="{MUTED}">{day}</text>'
        )
    parts.append(
        f'<text x="{left - 8}" y="{base + 16}" text-anchor="end" fill="{MUTED}">working day</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


# The frequency scale, light to dark, and "no chance to observe" in grey.
SCALE_COLOURS = ("#e7eefc", "#b9cbf3", "#7f9fe6", "#4670d6", "#1f3f99")
NO_CHANCE_COLOUR = "#c9ced8"


def scale_bars(
    chart_id: str, title: str, labels: Sequence[str], rows: Sequence[tuple[str, Sequence[int]]]
) -> Markup:
    """Draw one 100% bar per row, split by answer; a row is (label, counts per answer).

    `labels` names the answers in order (the scale, then "no chance to observe").
    """
    if not any(sum(counts) for _, counts in rows):
        return _empty(chart_id, title, "No answers yet.")
    colours = [*SCALE_COLOURS, NO_CHANCE_COLOUR][: len(labels)]
    desc = "; ".join(
        f"{label} ({sum(counts)} answers): "
        + ", ".join(f"{name} {c}" for name, c in zip(labels, counts, strict=True))
        for label, counts in rows
    )
    height = len(rows) * ROW_H + 34
    parts = [_open(chart_id, title, desc, height)]
    label_w = _label_column([label for label, _ in rows])
    bar_w = WIDTH - label_w
    for i, (label, counts) in enumerate(rows):
        y = i * ROW_H + 4
        total = sum(counts)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end" fill="{INK}">'
            f"<title>{escape(label)}</title>{escape(_label(label, label_w))}</text>"
        )
        x = float(label_w)
        for name, colour, c in zip(labels, colours, counts, strict=True):
            w = bar_w * c / total if total else 0
            if w:
                share = f"{100 * c / total:.0f}%"
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colour}">'
                    f"<title>{escape(label)}: {escape(name)} {c} ({share})</title></rect>"
                )
            x += w
    lx, ly = 0, len(rows) * ROW_H + 14
    for name, colour in zip(labels, colours, strict=True):
        parts.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}" stroke="{LINE}"/>'
            f'<text x="{lx + 17}" y="{ly + 11}" fill="{MUTED}">{escape(name)}</text>'
        )
        lx += 17 + math.ceil(text_width(name)) + 16
    parts.append("</svg>")
    return Markup("".join(parts))
