"""The OpenAPI document: built by spectree from the views' pydantic models, then adjusted.

spectree documents every response as application/json; errors are sent as
application/problem+json (RFC 9457), so the document says so, and it names
the bearer scheme and the RateLimit headers.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import request
from spectree import Response, SecurityScheme, SpecTree
from spectree.models import SecuritySchemeData

from nudger.api.schemas import ItemError, Problem

PROBLEM_REF = "#/components/schemas/Problem"
RATE_HEADERS = {
    "RateLimit-Policy": "the quota: q requests per w seconds (IETF draft ratelimit-headers)",
    "RateLimit": "what is left of the quota (r) and seconds until it resets (t)",
}


class ApiProblem(Exception):
    """An error answered as problem details."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        errors: list[ItemError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.problem = Problem(
            title=title, status=status, detail=detail or None, errors=errors,
            instance=request.path if request else None,
        )  # fmt: skip
        self.headers = headers or {}


def _field(loc: tuple) -> tuple[int | None, str]:
    """Turn pydantic's location (("items", 3, "email") or ("limit",)) into item and field."""
    parts = list(loc)
    item = None
    if len(parts) >= 2 and parts[0] == "items" and isinstance(parts[1], int):
        item, parts = parts[1], parts[2:]
    return item, ".".join(str(p) for p in parts)


def before(req, resp, error, instance, model_adapter) -> None:
    """Answer a request that failed validation with problem details (422, or 400 if not JSON)."""
    if error is None:
        return
    if req.method == "POST" and req.get_json(silent=True) is None:
        raise ApiProblem(400, "Bad request", "the body is not valid JSON: send one JSON object")
    errors = []
    for e in error.errors():
        item, field = _field(tuple(e.get("loc", ())))
        value = e.get("input")
        shown = value if isinstance(value, str) else ""
        message = e["msg"]
        if e.get("type") == "string_pattern_mismatch":
            # pydantic's message shows the regular expression, which tells a client nothing.
            message = "not a cursor: pass 0, or a `next_cursor` (or an item's `cursor`) you read"
        errors.append(ItemError(item=item, field=field, value=shown[:320], message=message))
    raise ApiProblem(422, "Invalid request", "the request does not match the schema", errors)


api_spec = SpecTree(
    "flask",
    mode="strict",  # only the API's views: the rest of the app is pages
    title="Nudger API",
    version="1",
    description="Journeys, enrolments and their progress. Send a token made with "
    "`nudger api-token create` as `Authorization: Bearer <token>`; read scope for GET, "
    "write scope for POST. Errors are RFC 9457 problem details.",
    before=before,
    validation_error_model=Problem,
    security_schemes=[
        SecurityScheme(name="bearer", data=SecuritySchemeData(type="http", scheme="bearer")),
    ],
    security={"bearer": []},
    annotations=False,
    naming_strategy=lambda model: model.__name__,  # the models' names are unique
    nested_naming_strategy=lambda _parent, child: child,
)


def responses(ok: int, model: Any, *errors: int) -> Response:
    """Document the answer `ok` with `model` and each error status with Problem."""
    codes = {f"HTTP_{ok}": model}
    for status in (400, 401, 403, 429, *errors):
        codes[f"HTTP_{status}"] = Problem
    return Response(**codes)


_document: dict[str, Any] | None = None


def document() -> dict[str, Any]:
    """Return the OpenAPI document (built once per process, on the first request)."""
    global _document
    if _document is None:
        doc = copy.deepcopy(api_spec.spec)
        doc["openapi"] = "3.1.0"
        headers = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in RATE_HEADERS.items()
        }
        for path in doc["paths"].values():
            for operation in path.values():
                for status, answer in operation["responses"].items():
                    content = answer.get("content", {})
                    json = content.get("application/json")
                    if json and json.get("schema", {}).get("$ref") == PROBLEM_REF:
                        content["application/problem+json"] = content.pop("application/json")
                    if status in ("200", "201", "429"):
                        answer["headers"] = dict(headers)
                    if status == "429":
                        answer["headers"]["Retry-After"] = {
                            "description": "seconds to wait", "schema": {"type": "integer"},
                        }  # fmt: skip
        _document = doc
    return _document
