"""Server-drawn SVG charts: every label readable, axes that say what they measure."""

from __future__ import annotations

import re
from datetime import date, timedelta

from nudger.insights import charts

TITLES = [
    "Read the SBI one-pager",
    "Watch the video",
    "Discuss it with a colleague",
    "Practise once",
    "Ask for feedback",
    "Reflect",
    "Try it again",
    "Ask your report",
    "Workshop",
    "Write down three conversations you avoided last month and why",
    "Share one thing you changed",
    "Celebrate",
]


def labels(svg: str) -> list[str]:
    return re.findall(r'text-anchor="end" fill="#1d2433">([^<]+)</text>', svg)


def test_a_long_label_is_cut_at_its_end_never_at_its_start():
    steps = [(f"{i + 1}. {t}", i, 2) for i, t in enumerate(TITLES)]
    svg = charts.timeline("t", "Timeline", steps, [1], [(3, "manager")])
    shown = labels(svg)
    assert len(shown) == 12
    assert shown[9].startswith("10. Write down") and shown[9].endswith("…")
    assert shown[0] == "1. Read the SBI one-pager"  # short labels are whole
    # Each label fits the column left of the bars, even in a wide fallback font.
    assert all(charts.text_width(s) <= charts.LABEL_MAX - 16 for s in shown)
    # The full label is still there, as the row's tooltip.
    assert f"<title>10. {TITLES[9]}: day 9, due day 11</title>" in svg


def test_fit_keeps_what_fits_and_ellipsises_the_rest():
    assert charts.fit("Reflect", 100) == "Reflect"
    cut = charts.fit("W" * 40, 100)
    assert cut.endswith("…") and charts.text_width(cut) <= 100
    assert charts.text_width("mmm") > charts.text_width("iii")


def test_the_daily_chart_labels_both_axes_and_dates_every_other_day():
    points = [(date(2027, 3, 1) + timedelta(days=i), i % 4) for i in range(14)]
    svg = charts.daily("d", "Steps completed per day", points)
    assert ">Steps done per day</text>" in svg and ">Running total</text>" in svg
    assert ">Date (UTC)</text>" in svg
    dates = re.findall(r'font-size="12">(\d+ \w+)</text>', svg)
    assert dates == ["1 Mar", "3 Mar", "5 Mar", "7 Mar", "9 Mar", "11 Mar", "13 Mar"]
    # Count ticks on the left run in round steps up to the busiest day.
    counts = re.findall(r'text-anchor="end" fill="#5b6475">(\d+)</text>', svg)
    assert counts == ["0", "1", "2", "3"]


def test_a_long_daily_chart_labels_weeks():
    points = [(date(2027, 1, 1) + timedelta(days=i), 1) for i in range(60)]
    dates = re.findall(r'font-size="12">(\d+ \w+)</text>', charts.daily("d", "D", points))
    assert dates[:3] == ["1 Jan", "8 Jan", "15 Jan"] and len(dates) == 9


def test_a_label_the_column_was_sized_for_is_not_cut():
    for title in ("1. Read the one-pager", "2. Discuss it", "Reflect"):
        svg = charts.timeline("t", "Timeline", [(title, 0, 2)], [], [])
        assert labels(svg) == [title]


def contrast_on_white(colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    lum = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (lum + 0.05)


def test_every_text_in_the_charts_is_dark_enough_to_read_on_white():
    steps = [(f"{i + 1}. {t}", i, 2) for i, t in enumerate(TITLES)]
    points = [(date(2027, 3, 1) + timedelta(days=i), i % 4) for i in range(14)]
    svgs = [
        charts.timeline("t", "T", steps, [1, 4], [(3, "manager"), (8, "skip_level")]),
        charts.funnel("f", "F", [(label, 4, 2) for label, _, _ in steps], 5),
        charts.hbars("h", "H", [("a", 2, "2 stuck")], colour="stall"),
        charts.stacked("s", "S", [("on_track", "On track", 3), ("behind", "Behind", 1)]),
        charts.daily("d", "D", points),
    ]
    fills = {f for svg in svgs for f in re.findall(r'<text[^>]* fill="(#[0-9a-f]{6})"', svg)}
    assert fills and all(contrast_on_white(f) >= 4.5 for f in fills), {
        f: round(contrast_on_white(f), 2) for f in fills
    }


def test_the_funnels_counts_fit_inside_the_chart():
    steps = [(f"Step {i} with a fairly long title", 13_000, 11_000) for i in range(3)]
    svg = str(charts.funnel("f", "F", steps, 13_000))
    counts = re.findall(r'<text x="([\d.]+)"[^>]*>(\d[^<]*sent)</text>', svg)
    assert counts and all(
        float(x) + charts.text_width(text) <= charts.WIDTH for x, text in counts
    ), counts
