"""What a journey may say about measuring its goal's behaviours."""

from pathlib import Path
from textwrap import dedent

import pytest

from nudger.journeys.loading import JourneyError, load_journey
from nudger.journeys.spec import JourneySpec, behaviour_key

BASE = """\
slug: tiny
title: A tiny journey
goal:
  - key: asks-open-questions
    text: Asks at least three open questions before offering a suggestion
  - Opens 1:1s with a question about the person's goal
steps:
  - key: first
    day: 0
    kind: read
    title: Read the first thing
"""


def load(tmp_path: Path, text: str) -> JourneySpec:
    path = tmp_path / "j.yaml"
    path.write_text(dedent(text), encoding="utf-8")
    return load_journey(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(JourneyError) as caught:
        load(tmp_path, text)
    return [str(p) for p in caught.value.problems]


def test_goal_items_are_keyed_or_get_a_key_from_their_words(tmp_path):
    spec = load(tmp_path, BASE)
    assert [(b.key, b.text) for b in spec.behaviours()] == [
        ("asks-open-questions", "Asks at least three open questions before offering a suggestion"),
        (
            "opens-1-1s-with-a-question-about-the-person-s-goal",
            "Opens 1:1s with a question about the person's goal",
        ),
    ]


def test_a_journey_without_measure_measures_nothing_and_keeps_its_checksum(tmp_path):
    spec = load(tmp_path, BASE)
    assert spec.measure is None
    # The stored form of a plain goal string is still the string.
    assert spec.model_dump(mode="json")["goal"][1] == spec.goal[1].text
    again = JourneySpec.model_validate(spec.model_dump(mode="json"))
    assert again.checksum() == spec.checksum()


def test_measure_defaults_to_both_raters_at_start_and_end(tmp_path):
    spec = load(tmp_path, BASE + "measure: {}\n")
    assert spec.measure.raters == ["learner", "manager"]
    assert spec.measure.checkpoints() == ["start", "end"]


def test_checkpoints_are_ordered_start_end_then_days_after(tmp_path):
    spec = load(tmp_path, BASE + "measure:\n  raters: [learner]\n  at: [20, end, start, 5]\n")
    assert spec.measure.checkpoints() == ["start", "end", "5", "20"]


def test_bad_measure_is_reported_with_file_line_and_field(tmp_path):
    text = BASE + dedent("""\
        measure:
          raters: [learner, boss]
          at: [start, 0]
        share_manager_ratings: maybe
        """)
    file = tmp_path / "j.yaml"
    assert problems(tmp_path, text) == [
        f"{file}:13: measure.raters[1]: must be one of learner or manager, not 'boss'",
        f"{file}:14: measure.at[1]: must be start, end, "
        "or a number of working days after the end (1 or more)",
        f"{file}:15: share_manager_ratings: must be true or false",
    ]


def test_repeated_checkpoints_and_behaviour_keys_are_errors(tmp_path):
    text = (
        BASE.replace("steps:", "  - key: asks-open-questions\n    text: Something else\nsteps:")
        + "measure:\n  at: [end, end]\n"
    )
    found = problems(tmp_path, text)
    assert any(
        ":7: goal[2].key: its key, 'asks-open-questions', is already the key of goal[0]" in p
        for p in found
    ), found
    assert any("measure.at[1]: end is listed twice" in p for p in found), found


def test_two_plain_strings_with_the_same_words_clash(tmp_path):
    text = BASE.replace("steps:", "  - Opens 1:1s with a question about the person's goal!\nsteps:")
    found = problems(tmp_path, text)
    assert any(":7: goal[2]: the key made from its words" in p for p in found), found


def test_behaviour_keys_from_words_are_short_slugs():
    assert behaviour_key("Gives feedback within 48 hours!") == "gives-feedback-within-48-hours"
    assert len(behaviour_key("word " * 40)) <= 60
