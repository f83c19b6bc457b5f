"""The audit log: one row per change, so an admin can answer "who did that, and why?"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from nudger.models import AuditLog


def record(
    session: Session,
    actor: str,
    action: str,
    now: datetime,
    subject_type: str = "",
    subject_id: int | None = None,
    **detail: Any,
) -> None:
    """Add one audit row to the session; the caller's transaction commits it."""
    session.add(
        AuditLog(
            at=now,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            detail=detail,
        )
    )
