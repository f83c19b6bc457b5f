"""API tokens: made once and shown once, kept as a SHA-256, checked on every request.

A token is 32 random bytes (256 bits), so a plain SHA-256 is enough to keep a
leaked table from opening anything (no salt or slow hash needed: nothing can
be guessed), and a look-up by its hash reveals nothing through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from nudger.audit import record
from nudger.models import ApiToken
from nudger.wording import ngettext

PREFIX = "ndg_"
SCOPES = ("read", "write")
# last_used_at is written at most this often per token: not one UPDATE per request.
TOUCH_EVERY = timedelta(minutes=1)
NAME_MAX = ApiToken.__table__.c.name.type.length


class TokenRejected(ValueError):
    """The name or scope asked for is not acceptable; the message says why."""


@dataclass(frozen=True)
class Caller:
    """Who is calling the API: a token's id, name and scope."""

    id: int
    name: str
    scope: str

    @property
    def actor(self) -> str:
        """Name the token in the audit log."""
        return f"api-token:{self.id}:{self.name}"

    def may(self, scope: str) -> bool:
        """Say whether this token's scope covers `scope` (write covers read)."""
        return scope == "read" or self.scope == "write"


def hash_token(token: str) -> str:
    """Return the hex SHA-256 a token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, name: str, scope: str, now: datetime, actor: str = "cli"
) -> tuple[ApiToken, str]:
    """Make a token; return its row and the token itself, which is never shown again."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise TokenRejected(f"a token needs a name of 1 to {NAME_MAX} characters")
    if scope not in SCOPES:
        raise TokenRejected(f"unknown scope {scope!r}: use read or write")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=hash_token(token),
        prefix=token[: len(PREFIX) + 4],
        scope=scope,
        created_by=actor,
        created_at=now,
    )
    session.add(row)
    session.flush()
    record(session, actor, "api_token.create", now, "api_token", row.id, name=name, scope=scope)
    session.commit()
    return row, token


def list_tokens(session: Session) -> list[ApiToken]:
    """Return every token, live ones first, newest first."""
    rows = session.exec(select(ApiToken).order_by(ApiToken.id.desc())).all()
    return sorted(rows, key=lambda t: t.revoked_at is not None)


def find_token(session: Session, ref: str) -> ApiToken | None:
    """Return the token with this id, or the one live token with this name.

    Names need not be unique: when several live tokens share the name, TokenRejected
    says so and lists their ids, rather than claiming that there is no such token.
    """
    ref = ref.strip()
    if ref.isdigit():
        return session.get(ApiToken, int(ref))
    rows = session.exec(
        select(ApiToken)
        .where(ApiToken.name == ref, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.id)
    ).all()
    if len(rows) > 1:
        ids = ", ".join(str(r.id) for r in rows)
        raise TokenRejected(
            ngettext(
                "%(num)d live token is named %(name)r (id %(ids)s): name it by its id",
                "%(num)d live tokens are named %(name)r (ids %(ids)s): name one by its id",
                len(rows),
                name=ref,
                ids=ids,
            )
        )
    return rows[0] if rows else None


def revoke_token(session: Session, token_id: int, now: datetime, actor: str = "cli") -> bool:
    """Revoke a token at once; return False if it was already revoked."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if not result.rowcount:
        return False  # the UPDATE changed nothing: nothing to undo
    record(session, actor, "api_token.revoke", now, "api_token", token_id)
    session.commit()
    return True


def authenticate(session: Session, token: str, now: datetime) -> Caller | None:
    """Return the caller a live token belongs to, or None; note when it was last used."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    digest = hash_token(token)
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        session.commit()
    return Caller(row.id, row.name, row.scope)
