"""The REST API under /api/v1: bearer tokens, rate limits, problem details for every error.

The views (`views`) are thin: they parse with the pydantic models of
`nudger.api.schemas` (through spectree, which also builds the OpenAPI
document, `spec`) and call one function of `nudger.api`.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from nudger import webhooks
from nudger.api.access import Caller, authenticate
from nudger.api.quotas import ApiLimiter, Verdict
from nudger.db import utcnow
from nudger.web import csrf, db, settings
from nudger.web.api.spec import ApiProblem, document

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
bp = Blueprint("api", __name__, url_prefix=PREFIX)
# Machines send no CSRF token: a bearer token in a header is not sent by browsers on their own.
csrf.exempt(bp)


def clock():
    """Return the time; tests set app.config["NUDGER_CLOCK"] to pass one in."""
    return current_app.config.get("NUDGER_CLOCK", utcnow)()


def caller() -> Caller:
    """Return the token this request was made with (checked before every view)."""
    return g.api_caller


def is_api_request() -> bool:
    """Say whether the request is for the API (its errors are problem details, not pages)."""
    return request.path == "/api" or request.path.startswith("/api/")


def problem_response(exc: ApiProblem):
    # Members with nothing to say are left out (RFC 9457 makes them all optional).
    body = {k: v for k, v in exc.problem.model_dump(mode="json").items() if v is not None}
    response = jsonify(body)
    response.status_code = exc.problem.status
    response.mimetype = PROBLEM
    response.headers.update(exc.headers)
    return response


def http_problem(exc: HTTPException):
    """Answer an HTTP error (404, 405, 413...) of an API address as problem details."""
    detail = {
        404: "there is nothing at this address",
        405: f"{request.method} is not allowed here",
    }.get(exc.code or 500, "")
    headers = {}
    if exc.code == 405 and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return problem_response(ApiProblem(exc.code or 500, exc.name, detail, headers=headers))


def _limiter() -> ApiLimiter:
    found = current_app.extensions.get("nudger.api_limiter")
    if found is None:
        from nudger.queue import redis_connection

        found = ApiLimiter(redis_connection(settings()), settings().api_rate_limit)
        current_app.extensions["nudger.api_limiter"] = found
    return found


def _count(key: str) -> None:
    verdict = _limiter().hit(key)
    g.api_limit = verdict
    if verdict is not None and not verdict.allowed:
        headers = verdict.headers() | {"Retry-After": str(max(1, verdict.reset))}
        raise ApiProblem(
            429, "Too many requests",
            f"more than {verdict.limit} requests in {verdict.window} seconds: "
            f"try again in {max(1, verdict.reset)} seconds",
            headers=headers,
        )  # fmt: skip


@bp.before_request
def check_token() -> None:
    """Let through a live token whose scope covers the method, within its rate limit."""
    if request.endpoint == "api.openapi":
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    found = None
    if scheme.lower() == "bearer" and token.strip():
        found = authenticate(db(), token.strip(), clock())
    if found is None:
        _count(f"addr:{request.remote_addr or 'unknown'}")
        raise ApiProblem(
            401, "Unauthorized",
            "send a live API token as `Authorization: Bearer <token>` "
            "(make one with `nudger api-token create NAME`)",
            headers={"WWW-Authenticate": 'Bearer realm="nudger"'},
        )  # fmt: skip
    _count(f"token:{found.id}")
    needed = "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"
    if not found.may(needed):
        raise ApiProblem(
            403, "Forbidden", f"this token's scope is {found.scope}; this needs {needed}",
            headers={"WWW-Authenticate": 'Bearer realm="nudger", error="insufficient_scope"'},
        )  # fmt: skip
    g.api_caller = found


@bp.after_request
def rate_headers(response):
    verdict: Verdict | None = g.get("api_limit")
    if verdict is not None:
        for name, value in verdict.headers().items():
            response.headers.setdefault(name, value)
    return response


@bp.after_request
def deliver_soon(response):
    # A write that succeeded committed its events (enrolment.created, step.completed):
    # subscribers hear now rather than at the next tick.
    if request.method == "POST" and response.status_code < 300:
        webhooks.kick_if_subscribed(db(), settings())
    return response


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API."""
    return jsonify(document())


def init_app(app: Flask) -> None:
    """Register the API, its docs page and its error answers."""
    from nudger.web.api import docs, views  # noqa: F401  (the routes)

    app.register_blueprint(bp)
    app.register_blueprint(docs.bp)

    @app.errorhandler(HTTPException)
    def other_http_error(exc: HTTPException):
        # 404, 405, 400 and 500 have the app's own handlers, which ask the same question.
        return http_problem(exc) if is_api_request() else exc

    @app.errorhandler(ApiProblem)
    def api_problem(exc: ApiProblem):
        response = problem_response(exc)
        verdict: Verdict | None = g.get("api_limit")
        if verdict is not None:
            for name, value in verdict.headers().items():
                response.headers.setdefault(name, value)
        return response
