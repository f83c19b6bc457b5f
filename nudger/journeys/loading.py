"""Read journey files (`journeys/*.yaml`) into specs, with a file and line for every problem."""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from nudger.journeys.spec import JourneySpec, Loc
from nudger.text import escape_controls


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a journey file, located as precisely as the file allows."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return ": ".join(part for part in (where, self.field, self.message) if part)


class JourneyError(Exception):
    """Journey files are invalid; str() lists every problem, one a line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(map(str, problems)))


# A journey is four levels deep (steps[0].title); anything far deeper is not a journey, and
# would exhaust the composer's recursion.
MAX_DEPTH = 20
# `!!str 10:00` keeps a value text; other tags build bytes, sets or dates no journey field takes.
_TAGS = (None, "!", "tag:yaml.org,2002:str")


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a journey file may not use."""


class _Loader(yaml.SafeLoader):
    """A SafeLoader for journey files: plain YAML as people write it, and nothing more.

    `at: 10:00` and `on: mon` stay strings. Anchors and aliases are refused: journey files
    need neither, and a few lines of nested aliases (a "billion laughs") expand into
    gigabytes. A value YAML cannot build (`2027-02-30`, `0b_`) stays text for the checks
    to report at its field.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            problem = f"aliases (*{event.anchor}) are not allowed in journey files"
            raise _Refused(None, None, problem, event.start_mark)
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            problem = f"anchors (&{event.anchor}) are not allowed in journey files"
            raise _Refused(None, None, problem, event.start_mark)
        tag = getattr(event, "tag", None)
        if tag not in _TAGS:
            problem = f"tags ({tag}) are not allowed in journey files"
            raise _Refused(None, None, problem, event.start_mark)
        if self._depth >= MAX_DEPTH:
            problem = f"nested more than {MAX_DEPTH} levels deep"
            raise _Refused(None, None, problem, event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        value = self.construct_scalar(node)
        # YAML 1.1 reads 10:00 as the base-60 integer 600.
        if ":" in value:
            return value
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # 0b_, or more digits than Python converts
            return value

    def construct_yaml_float(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_float(node)
        except ValueError:
            return self.construct_scalar(node)

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> Any:
        # YAML 1.1 reads on/off/yes/no as booleans, which would turn the digest's `on:` into True.
        value = self.construct_scalar(node)
        return value.lower() == "true" if value.lower() in ("true", "false") else value

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:  # 2027-02-30 has a date's shape but is no date
            return self.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _Loader.construct_yaml_bool)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)

# Pydantic's wording, put the way the other messages are; anything else keeps pydantic's text.
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field (check the spelling)",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing_size": "is too big a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of fields",
    "model_type": "must be a mapping of fields",
}


def _index(node: yaml.Node, path: Loc, lines: dict[Loc, int], repeats: list[Loc]) -> None:
    """Record the line of every key and list item under node, and keys given twice."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            loc = (*path, key_node.value if isinstance(key_node, yaml.ScalarNode) else "?")
            if loc in lines:
                repeats.append(loc)
            lines[loc] = key_node.start_mark.line + 1
            _index(value_node, loc, lines, repeats)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _index(item, (*path, i), lines, repeats)


def _field(loc: Loc) -> str:
    """Spell a location as a person would look for it: steps[2].kind."""
    text = ""
    for part in loc:
        # A key spelt with control characters (ESC) must not reach the terminal as they are.
        name = escape_controls(str(part))
        text += f"[{part}]" if isinstance(part, int) else f".{name}" if text else name
    return text


def _message(error: ErrorDetails) -> str:
    """Say what is wrong in the words the rest of the messages use."""
    if error["type"] == "literal_error":
        choices = error["ctx"]["expected"].replace("'", "")
        return f"must be one of {choices}, not {error['input']!r}"
    ctx = error.get("ctx", {})
    if error["type"] == "value_error":
        # Our validators raise ValueError("must ..."); others (an email address) word their own.
        return str(ctx["error"]) if "error" in ctx else error["msg"].removeprefix("value ")
    template = _MESSAGES.get(error["type"])
    try:
        return template.format(**ctx) if template else error["msg"]
    except (KeyError, IndexError):  # a context without the value the template names
        return error["msg"]


_NEEDS = "slug, title, goal and steps"
_LINE_SEPARATOR = re.compile("[\x85\u2028\u2029]")


def _read(path: Path) -> tuple[JourneySpec, dict[Loc, int]]:
    """Parse and validate one file, returning the spec and the line of each location."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise JourneyError([Problem(name, None, "", f"cannot read it: {exc.strerror}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise JourneyError([Problem(name, line, "", "is not UTF-8 text")]) from exc
    # YAML also ends lines at a lone CR, U+0085, U+2028 and U+2029, where editors may not:
    # one line break keeps every line number the one an editor shows.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if found := _LINE_SEPARATOR.search(text):
        line = text.count("\n", 0, found.start()) + 1
        message = f"invalid YAML: the character U+{ord(found[0]):04X} is not allowed"
        raise JourneyError([Problem(name, line, "", message)])
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # A tag may spell any character with %XX; its message must not act on a terminal.
        reason = escape_controls("; ".join(part for part in (exc.context, exc.problem) if part))
        line = mark.line + 1 if mark else None
        prefix = "" if isinstance(exc, _Refused) else "invalid YAML: "
        raise JourneyError([Problem(name, line, "", prefix + reason)]) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML refuses, such as NUL
        line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: the character U+{exc.character:04X} is not allowed"
        raise JourneyError([Problem(name, line, "", message)]) from exc
    except yaml.YAMLError as exc:
        raise JourneyError([Problem(name, None, "", f"invalid YAML: {exc}")]) from exc
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise JourneyError([Problem(name, None, "", "is empty; a journey needs " + _NEEDS)])
    if not isinstance(data, dict):
        message = "must be a mapping with " + _NEEDS
        raise JourneyError([Problem(name, node.start_mark.line + 1, "", message)])

    lines: dict[Loc, int] = {(): node.start_mark.line + 1}
    repeats: list[Loc] = []
    _index(node, (), lines, repeats)
    problems = [Problem(name, lines[loc], _field(loc), "is given twice") for loc in repeats]
    try:
        spec = JourneySpec.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            while loc not in lines:  # a missing field is reported at its parent's line
                loc = loc[:-1]
            problems.append(Problem(name, lines[loc], _field(error["loc"]), _message(error)))
    if problems:
        raise JourneyError(sorted(problems, key=lambda p: p.line or 0))
    return spec, lines


def load_journey(path: str | PathLike[str]) -> JourneySpec:
    """Read one journey file, raising JourneyError with every problem found in it."""
    return _read(Path(path))[0]


def load_journeys(paths: str | PathLike[str] | Iterable[str | PathLike[str]]) -> list[JourneySpec]:
    """Read journey files and directories of them, raising JourneyError with every problem."""
    if isinstance(paths, str | PathLike):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            # Dotfiles are editor backups and lock files, not journeys.
            files += sorted(
                f for f in path.iterdir()
                if f.suffix in (".yaml", ".yml") and f.is_file() and not f.name.startswith(".")
            )  # fmt: skip
        else:
            files.append(path)

    specs: list[JourneySpec] = []
    problems: list[Problem] = []
    owners: dict[str, Path] = {}
    for file in files:
        try:
            spec, lines = _read(file)
        except JourneyError as exc:
            problems += exc.problems
            continue
        if spec.slug in owners:
            message = f"{spec.slug!r} is already the slug of {owners[spec.slug]}"
            problems.append(Problem(str(file), lines[("slug",)], "slug", message))
            continue
        owners[spec.slug] = file
        specs.append(spec)
    if problems:
        raise JourneyError(problems)
    return specs
