"""Console sessions kept on the server, so that ending one ends every copy of its cookie."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from nudger.models import AdminSession, AdminUser

SESSION_HOURS = 12  # a signed-in console lasts a working day
SEEN_EVERY = timedelta(minutes=5)  # how stale last_seen_at may get: not a write per request
KEEP = timedelta(days=30)  # ended sessions stay this long, to be looked at after an incident


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(session: Session, admin: AdminUser, now: datetime, ip: str = "") -> str:
    """Open a session for `admin`; return the token for the cookie (only its hash is stored)."""
    session.exec(
        delete(AdminSession).where(
            col(AdminSession.admin_id) == admin.id, col(AdminSession.expires_at) < now - KEEP
        )
    )
    token = secrets.token_urlsafe(32)
    session.add(
        AdminSession(
            token_hash=_digest(token),
            admin_id=admin.id,
            ip=ip[:64],
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS),
        )
    )
    session.flush()
    return token


def find(session: Session, token: str | None, now: datetime) -> AdminSession | None:
    """Return the live session the token names (noting it was seen), or None."""
    if not token:
        return None
    row = session.exec(
        select(AdminSession).where(AdminSession.token_hash == _digest(token))
    ).first()
    if row is None or row.revoked_at is not None or now >= row.expires_at:
        return None
    if now - row.last_seen_at >= SEEN_EVERY:
        row.last_seen_at = now
    return row


def end(session: Session, token: str | None, now: datetime) -> None:
    """End the session the token names."""
    if token:
        session.exec(
            update(AdminSession)
            .where(col(AdminSession.token_hash) == _digest(token))
            .where(col(AdminSession.revoked_at).is_(None))
            .values(revoked_at=now)
        )


def end_all(session: Session, admin_id: int, now: datetime) -> int:
    """End every live session of an admin; return how many there were."""
    result = session.exec(
        update(AdminSession)
        .where(col(AdminSession.admin_id) == admin_id)
        .where(col(AdminSession.revoked_at).is_(None))
        .where(col(AdminSession.expires_at) > now)
        .values(revoked_at=now)
    )
    return result.rowcount


def live(session: Session, admin_id: int, now: datetime) -> list[AdminSession]:
    """Return an admin's live sessions, the most recently seen first."""
    return list(
        session.exec(
            select(AdminSession)
            .where(AdminSession.admin_id == admin_id)
            .where(col(AdminSession.revoked_at).is_(None))
            .where(AdminSession.expires_at > now)
            .order_by(col(AdminSession.last_seen_at).desc(), col(AdminSession.id).desc())
        )
    )
