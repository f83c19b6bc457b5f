"""Admin users: creation and password checks."""

from __future__ import annotations

from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, select

from nudger.models import AdminUser, AuditLog

MIN_PASSWORD = 10
_hasher = PasswordHasher()


class AdminError(ValueError):
    """The email or password was not acceptable."""


def create_or_update_admin(session: Session, email: str, password: str, now: datetime) -> bool:
    """Create an admin, or set a new password; return True if created."""
    try:
        email = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AdminError(f"{email!r} is not a valid email address: {exc}") from None
    if len(password) < MIN_PASSWORD:
        raise AdminError(f"the password must be at least {MIN_PASSWORD} characters")
    admin = session.exec(select(AdminUser).where(AdminUser.email == email)).first()
    created = admin is None
    if created:
        admin = AdminUser(email=email, password_hash="", created_at=now)
        session.add(admin)
    admin.password_hash = _hasher.hash(password)
    session.flush()
    session.add(
        AuditLog(
            at=now,
            actor="cli",
            action="admin.create" if created else "admin.password",
            subject_type="admin",
            subject_id=admin.id,
            detail={"email": email},
        )
    )
    return created


def check_password(admin: AdminUser, password: str) -> bool:
    """Say whether `password` is the admin's."""
    try:
        return _hasher.verify(admin.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
