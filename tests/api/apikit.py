"""Helpers for the API's tests: tokens, a client that sends one, journeys with learners."""

from __future__ import annotations

from datetime import datetime

from flask.testing import FlaskClient
from sqlmodel import Session

from nudger.api.access import create_token


def make_token(session: Session, now: datetime, scope: str = "write", name: str = "lms") -> str:
    """Create a token the way `nudger api-token create` does; return it."""
    _row, token = create_token(session, name, scope, now)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(client: FlaskClient, token: str, path: str, **kw):
    return client.get(path, headers=bearer(token), **kw)


def post(client: FlaskClient, token: str, path: str, json=None):
    return client.post(path, headers=bearer(token), json=json)
