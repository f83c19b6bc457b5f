"""Any file given to the journey loader gives a journey or located problems, nothing else."""

import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from nudger.journeys.loading import JourneyError, load_journey
from nudger.journeys.spec import JourneySpec
from nudger.text import CONTROL
from tests.journeys.test_journeys import FULL, MINIMAL

pytestmark = pytest.mark.fuzz

# Values that have broken YAML loaders or validators: YAML 1.1 numbers, dates and booleans,
# anchors, tags, flow collections, quoting and escapes, control characters, huge values.
TRICKY = [
    "0b_", "0x_", "0o7", "0_", "1_000", "+12", "-0", "0.", ".5", "1e400", ".inf", "-.inf", ".nan",
    "9" * 5000, "2027-02-30", "2027-02-10 14:00:00", "2027-13-01T10:00:00Z", "10:00", "190:20:30",
    "24:00", "yes", "no", "on", "off", "~", "null", "true", "True", "[]", "{}", "[a, [b, [c]]]",
    "{a: 1, b: [2]}", "&x 1", "*x", "&x [*x]", "!!binary AAAA", "!!timestamp x", "!!float x",
    "!!int 1", "!!str 10:00", "!foo x", "!%00 x", "!%1b[2J x", "!!set {a}", "!!omap [a: 1]",
    "? [a]", "'it''s'",
    '"\\0"', '"\\e[31m"', '"\\x85"', '"\\u2028"', '"a\\nb"', '"\\t"', "|\n  text\n  more", ">-",
    "<<: {a: 1}", "- item", ": x", "#", "%YAML 1.1", "---", "...", "@", "`", "\t", "\x00", "\x1b",
    "\ufeff", "😀", "not-an-email", "a@b", "https://example.com/\x7f", "http://", "manager",
    "skip_level", "read", "week", "mon", "-1", "0", "1", "3",
]  # fmt: skip

# Characters YAML gives meaning to, so random text often parses and reaches the checks.
YAMLISH = st.sampled_from(list("abkey:- \n\t\"'[]{},&*!|>?#%@`~.0123456789\\\x00\x1b\x85\u2028"))


def check(path: Path) -> None:
    """Load path: a journey that dumps, or a JourneyError whose every problem is located."""
    try:
        spec = load_journey(path)
    except JourneyError as exc:
        lines = len(re.split(rb"\r\n|\r|\n", path.read_bytes()))
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == str(path)
            assert problem.message
            if problem.line is None:  # only problems with the whole file have no line
                assert problem.message.startswith("is empty"), problem
            else:
                assert 1 <= problem.line <= lines + 1, problem
            # What `nudger journeys check` prints cannot act on the terminal.
            assert not CONTROL.search(str(problem)), problem
        return
    assert isinstance(spec, JourneySpec)
    spec.checksum()  # a loaded journey dumps, as `journeys sync` does


def check_text(text: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "journey.yaml"
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8", newline="")
        else:
            path.write_bytes(text)
        check(path)


@given(st.binary(max_size=3000))
def test_any_bytes_give_a_journey_or_located_problems(data):
    check_text(data)


@given(st.text(YAMLISH, max_size=400))
def test_any_yaml_like_text_gives_a_journey_or_located_problems(text):
    check_text(text)


VALUE = re.compile(r"^(\s*(?:- )?[a-z_]+:) (.+)$")


@st.composite
def near_valid(draw) -> str:
    """A valid journey with a few values swapped for tricky ones, lines dropped or repeated."""
    lines = draw(st.sampled_from([FULL, MINIMAL])).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["value", "value", "text", "drop", "repeat"]))
        match = VALUE.match(lines[i])
        if action in ("value", "text") and match:
            value = draw(st.sampled_from(TRICKY) if action == "value" else st.text(max_size=30))
            lines[i] = f"{match[1]} {value}"
        elif action == "drop":
            del lines[i]
        elif action == "repeat":
            lines.insert(i, lines[i])
        if not lines:
            break
    return "\n".join(lines) + "\n"


@given(near_valid())
def test_a_nearly_valid_journey_gives_a_journey_or_located_problems(text):
    check_text(text)


# Any YAML value, so the checks meet every type at every field.
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.dates() | st.datetimes() | st.sampled_from(TRICKY),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@st.composite
def journey_data(draw) -> dict:
    """A journey as a mapping, with some fields replaced by any YAML value."""
    data = yaml.safe_load(FULL)
    targets = [(data, k) for k in data]
    targets += [(step, k) for step in data["steps"] for k in step]
    targets += [(data["schedule"], k) for k in data["schedule"]]
    for _ in range(draw(st.integers(1, 3))):
        parent, key = draw(st.sampled_from(targets))
        parent[key] = draw(YAML_VALUES)
    return data


@given(journey_data())
def test_any_value_in_any_field_gives_a_journey_or_located_problems(data):
    check_text(yaml.safe_dump(data, allow_unicode=True))
