"""/metrics for Prometheus, behind NUDGER_METRICS_TOKEN (a Bearer token); 404 when unset."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from nudger.db import utcnow
from nudger.insights.metrics import NudgerCollector
from nudger.web import settings

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    expected = settings().metrics_token
    if not expected:
        abort(404)  # not configured: no sign that anything is here
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
        return Response(
            "send NUDGER_METRICS_TOKEN as `Authorization: Bearer <token>`\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
            mimetype="text/plain",
        )
    clock = current_app.config.get("NUDGER_CLOCK", utcnow)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NudgerCollector(current_app.extensions["nudger.engine"], settings(), clock))
    response = Response(generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
