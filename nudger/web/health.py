"""GET /healthz: the database and Redis are reachable."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from nudger.queue import redis_connection
from nudger.web import db, settings

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    checks = {}
    try:
        db().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # report, don't crash: this page exists to say what is down
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        redis_connection(settings()).ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "unhealthy", **checks), 200 if healthy else 503
