"""Reading and validating journey files."""

import json
import time as time_module
import tracemalloc
from datetime import datetime, time
from pathlib import Path
from textwrap import dedent

import pytest

from nudger.journeys.loading import JourneyError, Problem, load_journey, load_journeys
from nudger.journeys.spec import JourneySpec

JOURNEYS = Path(__file__).resolve().parents[2] / "journeys"

MINIMAL = """\
slug: tiny
title: A tiny journey
goal:
  - Does one thing
steps:
  - key: first
    day: 0
    kind: read
    title: Read the first thing
"""

FULL = """\
slug: small
title: A small journey
owner: learning@example.com
goal:
  - Does the thing
schedule:
  send_time: "08:30"
  days: [mon, wed, fri]
  due_after: 3
steps:
  - key: workshop
    day: 4
    kind: workshop
    title: Come to the workshop
    minutes: 90
    at: 2027-02-10T14:00
  - key: read
    day: 0
    kind: read
    title: Read the guide
    minutes: 15
    link: https://intranet.example.com/guide
    body: |
      Read it **twice**.
  - key: ask
    day: 4
    kind: feedback
    title: Ask for feedback
    due_after: 5
    confirmed_by: manager
reminders:
  - after: 1
  - after: 4
escalations:
  - after: 3
    notify: manager
  - after: 8
    notify: skip_level
digest:
  every: week
  at: "07:45"
  on: fri
"""


def write(tmp_path: Path, text: str, name: str = "journey.yaml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """Return the 1-based line of the nth line containing needle."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(JourneyError) as caught:
        load_journey(path)
    return caught.value.problems


def test_example_journeys_are_valid():
    specs = load_journeys(JOURNEYS)

    assert len(specs) >= 3
    for spec in specs:
        assert (JOURNEYS / f"{spec.slug}.yaml").exists()
        assert 8 <= len(spec.steps) <= 14
        assert spec.owner == "learning@example.com"
        assert any(s.confirmed_by == "manager" for s in spec.steps if s.kind == "feedback")
        workshops = [s for s in spec.steps if s.kind == "workshop"]
        assert workshops and all(s.at and s.at.weekday() < 5 and s.minutes for s in workshops)
        assert {e.notify for e in spec.escalations} == {"manager", "skip_level", "admin"}


def test_a_minimal_journey_gets_the_contract_defaults(tmp_path):
    spec = load_journey(write(tmp_path, MINIMAL))

    assert spec.schedule.send_time == time(9, 0)
    assert spec.schedule.invite_time == time(10, 0)
    assert spec.schedule.days == ["mon", "tue", "wed", "thu", "fri"]
    assert spec.schedule.holidays is True
    assert spec.schedule.due_after == 2
    assert (spec.digest.every, spec.digest.at, spec.digest.on) == ("day", time(8, 0), "mon")
    assert spec.owner is None and spec.reminders == [] and spec.escalations == []


def test_steps_are_sorted_by_day(tmp_path):
    spec = load_journey(write(tmp_path, FULL))

    # Steps on the same day keep the order they have in the file.
    assert [s.key for s in spec.steps] == ["read", "workshop", "ask"]
    assert [s.position for s in spec.steps] == [0, 1, 2]


def test_step_fields_are_read(tmp_path):
    spec = load_journey(write(tmp_path, FULL))

    assert spec.step("workshop").at == datetime(2027, 2, 10, 14, 0)
    assert spec.step("read").body == "Read it **twice**.\n"
    assert spec.step("read").link == "https://intranet.example.com/guide"
    with pytest.raises(KeyError):
        spec.step("nope")


def test_due_after_for_prefers_the_step_override(tmp_path):
    spec = load_journey(write(tmp_path, FULL))

    assert spec.due_after_for(spec.step("ask")) == 5
    assert spec.due_after_for(spec.step("read")) == 3


def test_weekday_numbers_count_from_monday(tmp_path):
    text = FULL.replace("days: [mon, wed, fri]", "days: [sun, mon, fri]")
    spec = load_journey(write(tmp_path, text))

    assert spec.weekday_numbers() == [0, 4, 6]


def test_json_dump_round_trips(tmp_path):
    spec = load_journey(write(tmp_path, FULL))

    stored = json.loads(json.dumps(spec.model_dump(mode="json")))
    again = JourneySpec.model_validate(stored)

    assert again == spec
    assert stored["schedule"]["send_time"] == "08:30"
    assert stored["steps"][1]["at"] == "2027-02-10T14:00"
    assert [s.position for s in again.steps] == [0, 1, 2]
    assert again.checksum() == spec.checksum()


def test_checksum_ignores_comments_and_notices_edits(tmp_path):
    spec = load_journey(write(tmp_path, FULL, "a.yaml"))
    commented = load_journey(write(tmp_path, "# a comment\n" + FULL, "b.yaml"))
    edited = load_journey(write(tmp_path, FULL.replace("minutes: 90", "minutes: 60"), "c.yaml"))

    assert commented.checksum() == spec.checksum()
    assert edited.checksum() != spec.checksum()


def test_it_rejects_unknown_kind_with_line(tmp_path):
    text = FULL.replace("kind: feedback", "kind: lecture")
    path = write(tmp_path, text)
    [problem] = problems_of(path)

    assert problem.line == line_of(text, "kind: lecture")
    assert problem.field == "steps[2].kind"
    assert problem.message.startswith("must be one of read, discuss, elearning")
    assert str(problem) == f"{path}:{problem.line}: steps[2].kind: {problem.message}"


def test_unknown_field_is_reported(tmp_path):
    text = FULL.replace("    minutes: 15\n", "    minutes: 15\n    titel: Typo\n")
    [problem] = problems_of(write(tmp_path, text))

    assert (problem.line, problem.field) == (line_of(text, "titel:"), "steps[1].titel")
    assert "not a known field" in problem.message


def test_it_names_the_file_and_line_of_a_duplicate_step_key(tmp_path):
    text = FULL.replace("key: ask", "key: read")
    path = write(tmp_path, text)
    [problem] = problems_of(path)

    assert problem.file == str(path)
    assert problem.line == line_of(text, "key: read", occurrence=2)
    assert problem.field == "steps[2].key"
    assert "steps[1]" in problem.message


def test_a_missing_field_is_reported_at_its_step(tmp_path):
    text = FULL.replace("    title: Ask for feedback\n", "")
    [problem] = problems_of(write(tmp_path, text))

    assert (problem.line, problem.field) == (line_of(text, "key: ask"), "steps[2].title")
    assert problem.message == "is required"


def test_it_reports_every_problem_in_a_file(tmp_path):
    text = (
        FULL.replace("slug: small", "slug: Small Journey")
        .replace('send_time: "08:30"', 'send_time: "8.30"')
        .replace("kind: read", "kind: reading")
        .replace("notify: skip_level", "notify: ceo")
    )
    problems = problems_of(write(tmp_path, text))

    assert [(p.line, p.field) for p in problems] == [
        (line_of(text, "slug:"), "slug"),
        (line_of(text, "send_time:"), "schedule.send_time"),
        (line_of(text, "kind: reading"), "steps[1].kind"),
        (line_of(text, "notify: ceo"), "escalations[1].notify"),
    ]
    assert str(JourneyError(problems)).count("\n") == 3


def test_yaml_syntax_error_has_a_line(tmp_path):
    text = MINIMAL.replace("    day: 0", "   day: 0")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.line == line_of(text, "   day: 0")
    assert problem.message.startswith("invalid YAML")


def test_a_key_given_twice_is_reported(tmp_path):
    text = MINIMAL + "    title: Read it again\n"
    [problem] = problems_of(write(tmp_path, text))

    assert (problem.line, problem.field) == (line_of(text, "Read it again"), "steps[0].title")


@pytest.mark.parametrize("value", ['"24:00"', '"9:30"', '"09:60"', "noon", "930"])
def test_times_must_be_valid_24h_times(tmp_path, value):
    text = FULL.replace('send_time: "08:30"', f"send_time: {value}")
    [problem] = problems_of(write(tmp_path, text))

    assert (problem.line, problem.field) == (line_of(text, "send_time:"), "schedule.send_time")


def test_unquoted_times_and_the_on_key_are_read_as_written(tmp_path):
    # Plain YAML 1.1 would read 10:00 as 600 and the key `on` as True.
    text = FULL.replace('at: "07:45"', "at: 10:00")
    spec = load_journey(write(tmp_path, text))

    assert spec.digest.at == time(10, 0)
    assert spec.digest.on == "fri"


@pytest.mark.parametrize("value", ["2027-02-10T14:00:00Z", "2027-02-30T14:00", "2027-02-10"])
def test_at_must_be_a_local_date_and_time(tmp_path, value):
    text = FULL.replace("at: 2027-02-10T14:00", f"at: {value}")
    [problem] = problems_of(write(tmp_path, text))

    assert (problem.line, problem.field) == (line_of(text, "    at: "), "steps[0].at")


def test_a_fixed_event_needs_minutes(tmp_path):
    text = FULL.replace("    minutes: 90\n", "")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.field == "steps[0].minutes"
    assert problem.line == line_of(text, "key: workshop")


def test_links_must_be_http_urls(tmp_path):
    text = FULL.replace("https://intranet.example.com/guide", "intranet/guide")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.field == "steps[1].link"
    assert problem.message == "must be an http:// or https:// URL"


def test_only_a_manager_can_confirm_a_step(tmp_path):
    text = FULL.replace("confirmed_by: manager", "confirmed_by: peer")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.field == "steps[2].confirmed_by"


@pytest.mark.parametrize("section", ["reminders", "escalations"])
def test_thresholds_must_strictly_increase(tmp_path, section):
    text = FULL.replace("after: 4", "after: 1").replace("after: 8", "after: 3")
    problems = problems_of(write(tmp_path, text))

    assert f"{section}[1].after" in [p.field for p in problems]


def test_a_journey_needs_at_least_one_step(tmp_path):
    text = MINIMAL.split("steps:")[0] + "steps: []\n"
    [problem] = problems_of(write(tmp_path, text))

    assert (problem.line, problem.field) == (line_of(text, "steps:"), "steps")


def test_an_empty_file_is_reported(tmp_path):
    [problem] = problems_of(write(tmp_path, ""))

    assert "is empty" in problem.message


def test_duplicate_slug_across_files(tmp_path):
    first = write(tmp_path, MINIMAL, "a.yaml")
    text = "# the same slug again\n" + MINIMAL
    second = write(tmp_path, text, "b.yaml")

    with pytest.raises(JourneyError) as caught:
        load_journeys(tmp_path)

    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(second), 2, "slug")
    assert str(first) in problem.message


def test_a_directory_means_its_yaml_files_in_order(tmp_path):
    write(tmp_path, MINIMAL.replace("slug: tiny", "slug: b"), "b.yml")
    write(tmp_path, MINIMAL.replace("slug: tiny", "slug: a"), "a.yaml")
    write(tmp_path, "not a journey", "notes.txt")
    write(tmp_path, "not: [a journey", ".#a.yaml")

    assert [spec.slug for spec in load_journeys(tmp_path)] == ["a", "b"]


def test_problems_of_every_file_are_collected(tmp_path):
    good = write(tmp_path, MINIMAL, "good.yaml")
    bad = write(tmp_path, MINIMAL.replace("kind: read", "kind: nope"), "bad.yaml")
    worse = write(tmp_path, "slug: [", "worse.yaml")

    with pytest.raises(JourneyError) as caught:
        load_journeys([good, bad, worse])

    assert [p.file for p in caught.value.problems] == [str(bad), str(worse)]


# --- files written to harm: each is refused at its line, quickly and in little memory


def billion_laughs(levels: int = 9) -> str:
    """Return a YAML bomb: each level's list names the previous level nine times."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [{','.join([f'*a{n - 1}'] * 9)}]")
    return "\n".join(["slug: bomb", *lines, ""])


def test_a_yaml_bomb_is_refused_at_its_first_anchor_in_little_time_and_memory(tmp_path):
    path = write(tmp_path, billion_laughs())
    tracemalloc.start()
    started = time_module.perf_counter()
    try:
        [problem] = problems_of(path)
    finally:
        elapsed = time_module.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    assert (problem.file, problem.line) == (str(path), 2)
    assert problem.message == "anchors (&a0) are not allowed in journey files"
    # Expanding it takes gigabytes and minutes; refusing it, well under a megabyte and a second.
    assert peak < 5_000_000
    assert elapsed < 1


def test_a_recursive_alias_is_refused_with_its_line(tmp_path):
    text = MINIMAL.replace("goal:\n  - Does one thing\n", "goal: &goal [*goal]\n")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.line == line_of(text, "goal:")
    assert "anchors (&goal)" in problem.message


def test_an_alias_is_refused_with_its_line(tmp_path):
    text = MINIMAL.replace("title: Read the first thing", "title: *heading")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.line == line_of(text, "*heading")
    assert problem.message == "aliases (*heading) are not allowed in journey files"


@pytest.mark.parametrize("value", ["!!binary AAAA", "!!timestamp soon", "!!float ten", "!foo x"])
def test_a_tag_is_refused_with_its_line(tmp_path, value):
    text = MINIMAL.replace("title: A tiny journey", f"title: {value}")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.line == line_of(text, "title:")
    assert problem.message.startswith("tags (")


def test_a_str_tag_keeps_a_value_text(tmp_path):
    text = MINIMAL.replace("title: A tiny journey", "title: !!str 10:00")

    assert load_journey(write(tmp_path, text)).title == "10:00"


def test_deep_nesting_is_refused_with_its_line(tmp_path):
    text = MINIMAL + "summary: " + "[" * 5000 + "]" * 5000 + "\n"
    [problem] = problems_of(write(tmp_path, text))

    assert problem.line == line_of(text, "summary:")
    assert problem.message == "nested more than 20 levels deep"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("day: 0", "day: 0b_", "steps[0].day"),  # YAML's binary-number shape, with no digits
        ("day: 0", "day: " + "9" * 5000, "steps[0].day"),  # beyond Python's int() limit
        ("day: 0", "day: 2027-02-30", "steps[0].day"),  # a date's shape, no such date
        ("day: 0", "day: 2027-02-30 10:00:00", "steps[0].day"),
    ],
)
def test_a_value_yaml_cannot_build_is_reported_at_its_field(tmp_path, old, new, field):
    text = MINIMAL.replace(old, new)
    problems = problems_of(write(tmp_path, text))

    assert [(p.line, p.field) for p in problems] == [(line_of(text, new[:10]), field)]
    assert problems[0].message in ("must be a whole number", "is too big a number")


def test_an_owner_that_is_not_an_email_address_is_reported_at_its_line(tmp_path):
    text = MINIMAL.replace("goal:", "owner: not-an-email\ngoal:")
    path = write(tmp_path, text)
    [problem] = problems_of(path)

    assert (problem.line, problem.field) == (line_of(text, "owner:"), "owner")
    assert str(problem) == (
        f"{path}:3: owner: is not a valid email address: An email address must have an @-sign."
    )


@pytest.mark.parametrize(
    ("old", "new", "field", "says"),
    [
        ("title: A tiny journey", r'title: "A tiny\u0000journey"', "title", "U+0000"),
        ("title: Read the first thing", r'title: "Read\e[2J it"', "steps[0].title", "U+001B"),
        ("title: Read the first thing", r'title: "Read\nit"', "steps[0].title", "one line"),
        ("  - Does one thing", r'  - "Does\x07 one thing"', "goal[0].text", "U+0007"),
        ("    day: 0", '    day: 0\n    body: "Line one\\n\\u0085next"', "steps[0].body", "U+0085"),
        ("    day: 0", '    day: 0\n    link: "https://example.com/\\0"', "steps[0].link", "URL"),
        ("  - Does one thing", '  - Does one thing\nsummary: "a\\x7fb"', "summary", "U+007F"),
    ],
)
def test_control_characters_in_text_are_reported_at_their_field(tmp_path, old, new, field, says):
    text = MINIMAL.replace(old, new)
    [problem] = problems_of(write(tmp_path, text))

    assert (problem.line, problem.field) == (line_of(text, new.split("\n")[-1][:12]), field)
    assert says in problem.message


def test_tabs_and_new_lines_in_a_body_are_fine(tmp_path):
    text = MINIMAL + '    body: "Line one\\n\\tindented"\n'

    assert load_journey(write(tmp_path, text)).steps[0].body == "Line one\n\tindented"


def test_a_character_yaml_refuses_is_reported_at_its_line(tmp_path):
    text = MINIMAL.replace("Read the first thing", "Read the\x00 first thing")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.line == line_of(text, "Read the")
    assert problem.message == "invalid YAML: the character U+0000 is not allowed"


def test_a_byte_that_is_not_utf8_is_reported_at_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("one thing", "une chose déjà").encode("latin-1"))
    [problem] = problems_of(path)

    assert (problem.line, problem.message) == (4, "is not UTF-8 text")


def test_a_key_with_control_characters_is_shown_escaped(tmp_path):
    text = MINIMAL + '"\\e[31mred": 1\n'
    [problem] = problems_of(write(tmp_path, text))

    assert problem.field == "\\x1b[31mred"
    assert "\x1b" not in str(problem)


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029"])
def test_a_unicode_line_separator_is_refused_at_the_line_an_editor_shows(tmp_path, separator):
    # YAML ends a line there and would count every later line one too many.
    text = MINIMAL.replace("A tiny journey", f"A tiny{separator}journey")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.line == line_of(text, "title:")
    assert problem.message == f"invalid YAML: the character U+{ord(separator):04X} is not allowed"


def test_lines_ended_by_a_lone_cr_are_counted_as_lines(tmp_path):
    text = MINIMAL.replace("kind: read", "kind: lecture")
    path = tmp_path / "mac.yaml"
    path.write_bytes(text.replace("\n", "\r").encode())
    [problem] = problems_of(path)

    assert (problem.line, problem.field) == (line_of(text, "kind:"), "steps[0].kind")


def test_a_tag_spelling_control_characters_is_shown_escaped(tmp_path):
    text = MINIMAL.replace("title: A tiny journey", "title: !%1b[2J x")
    [problem] = problems_of(write(tmp_path, text))

    assert problem.message == "tags (!\\x1b[2J) are not allowed in journey files"
