"""Render an email once per distinct content, then fill in each recipient.

A cohort's step email is the same for everyone in it but for a few strings:
the name, the address and the signed links. Rendering the templates and
inlining the CSS costs about a millisecond a message, most of what sending
one costs, so `render_personal` renders a context whose per-recipient strings
are slot markers, keeps the result (the "skeleton") keyed on everything else
in the context, and for each recipient joins the skeleton's fixed text with
that recipient's values, escaped for HTML in the HTML part.

Why this cannot send one person's link to another: the recipient's strings
are never part of a skeleton or of its key. A skeleton holds only markers,
which carry a random per-process nonce that no template or journey text can
forge, and `_split` refuses a rendering in which any marker was altered (a
filter applied to it, say): that context is then rendered in full, as before.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from datetime import date, datetime, time
from typing import Any

from markupsafe import Markup, escape

from nudger.mail.render import Rendered, render

# Private-use characters bracket the markers: text never holds them by accident.
_OPEN, _CLOSE = "\ue000", "\ue001"
_NONCE = secrets.token_hex(6)
_MARKER = re.compile(f"{_OPEN}{_NONCE}(\\d+){_CLOSE}")
_SCALARS = frozenset({str, Markup, int, bool, float, type(None), date, time})
MAX_SKELETONS = 512

# (kind, frozen context) -> the three parts split at their markers.
_skeletons: OrderedDict[tuple, tuple[list, list, list] | None] = OrderedDict()


class Personal:
    """One recipient's strings, handed to the templates as slot markers.

    Call it with a value to get the marker that stands for it in the context.
    Build the context in the same order for every recipient: markers are
    numbered, so equal content gives an equal context and shares a skeleton.
    """

    def __init__(self) -> None:
        self.values: list[str] = []

    def __call__(self, value: str) -> str:
        self.values.append(str(value))
        return f"{_OPEN}{_NONCE}{len(self.values) - 1}{_CLOSE}"

    def filled(self, ctx: Any) -> Any:
        """Return `ctx` with every marker replaced by its value (for a full render)."""
        if isinstance(ctx, dict):
            return {k: self.filled(v) for k, v in ctx.items()}
        if isinstance(ctx, list | tuple):
            return type(ctx)(self.filled(v) for v in ctx)
        if type(ctx) is str and _OPEN in ctx:
            return _MARKER.sub(lambda m: self.values[int(m.group(1))], ctx)
        return ctx


def render_personal(kind: str, ctx: dict[str, Any], personal: Personal) -> Rendered:
    """Render `kind` for one recipient: from a cached skeleton when there is one."""
    try:
        key = (kind, _freeze(ctx))
    except TypeError:
        return render(kind, personal.filled(ctx))  # a value we cannot key on safely
    if key in _skeletons:
        _skeletons.move_to_end(key)
        skeleton = _skeletons[key]
    else:
        skeleton = _build(kind, ctx, len(personal.values))
        _skeletons[key] = skeleton
        if len(_skeletons) > MAX_SKELETONS:
            _skeletons.popitem(last=False)
    if skeleton is None:
        return render(kind, personal.filled(ctx))
    subject, text, html = skeleton
    values = personal.values
    escaped = [str(escape(v)) for v in values]
    return Rendered(
        # As render() does for the whole subject: one line, single spaces.
        subject=" ".join(_join(subject, values).split()),
        text=_join(text, values),
        html=_join(html, escaped),
    )


def clear() -> None:
    """Forget every skeleton (after templates change, and between tests)."""
    _skeletons.clear()


def _build(kind: str, ctx: dict[str, Any], slots: int) -> tuple[list, list, list] | None:
    """Render the markers' skeleton; None when a marker did not survive intact."""
    rendered = render(kind, ctx)
    parts = [_split(part, slots) for part in (rendered.subject, rendered.text, rendered.html)]
    if any(p is None for p in parts):
        return None
    return parts[0], parts[1], parts[2]  # type: ignore[return-value]


def _split(text: str, slots: int) -> list | None:
    """Return [literal, slot, literal, slot, ..., literal], or None if a marker was altered."""
    pieces: list = _MARKER.split(text)
    for index in range(1, len(pieces), 2):
        pieces[index] = int(pieces[index])
        if pieces[index] >= slots:
            return None
    if any(_OPEN in piece or _CLOSE in piece for piece in pieces[::2]):
        return None
    return pieces


def _join(pieces: list, values: list[str]) -> str:
    out = pieces[:]
    for index in range(1, len(out), 2):
        out[index] = values[out[index]]
    return "".join(out)


def _freeze(value: Any) -> tuple:
    """Return a hashable key that tells apart every context that renders differently.

    Types are part of the key: True == 1 and Markup("&") == "&" render
    differently. An aware datetime keys on its zone too, since equal instants
    in two zones are equal but print different local times.
    """
    kind = type(value)
    if kind is dict:
        return (dict, tuple((k, _freeze(v)) for k, v in value.items()))
    if kind is list or kind is tuple:
        return (kind, tuple(_freeze(v) for v in value))
    if kind is datetime:
        return (kind, value, str(value.tzinfo))
    if kind in _SCALARS:
        return (kind, value)
    raise TypeError(f"cannot key a skeleton on {kind.__name__}")
