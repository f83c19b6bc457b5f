"""Admin users: creation, password and TOTP checks; a new password or TOTP ends their sessions."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from redis.exceptions import RedisError
from sqlmodel import Session, select

from nudger.admins import sessions
from nudger.audit import record as audit
from nudger.models import AdminUser

MIN_PASSWORD = 10
log = logging.getLogger(__name__)
_hasher = PasswordHasher()


class AdminError(ValueError):
    """The email or password was not acceptable."""


def admin_email(email: str) -> str:
    """Return the address an admin signs in with, or raise AdminError."""
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AdminError(f"{email!r} is not a valid email address: {exc}") from None


def check_new_password(password: str) -> None:
    """Raise AdminError unless `password` may be an admin's password."""
    if len(password) < MIN_PASSWORD:
        raise AdminError(f"the password must be at least {MIN_PASSWORD} characters")


def create_or_update_admin(session: Session, email: str, password: str, now: datetime) -> bool:
    """Create an admin, or set a new password; return True if created."""
    email = admin_email(email)
    check_new_password(password)
    admin = session.exec(select(AdminUser).where(AdminUser.email == email)).first()
    created = admin is None
    if created:
        admin = AdminUser(email=email, password_hash="", created_at=now)
        session.add(admin)
    admin.password_hash = _hasher.hash(password)
    session.flush()
    sessions.end_all(session, admin.id, now)
    action = "admin.create" if created else "admin.password"
    audit(session, "cli", action, now, "admin", admin.id, email=email)
    return created


def check_password(admin: AdminUser, password: str) -> bool:
    """Say whether `password` is the admin's."""
    try:
        return _hasher.verify(admin.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# --- signing in ---------------------------------------------------------------------

# Verified when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")


def find_admin(session: Session, email: str) -> AdminUser | None:
    """Return the admin with this email, if any."""
    return session.exec(select(AdminUser).where(AdminUser.email == email.strip().lower())).first()


def verify_login(session: Session, email: str, password: str) -> AdminUser | None:
    """Return the admin if the email and password match, else None."""
    admin = find_admin(session, email)
    if admin is None:
        with contextlib.suppress(VerificationError, InvalidHashError):
            _hasher.verify(_DUMMY_HASH, password)
        return None
    if not check_password(admin, password):
        return None
    if _hasher.check_needs_rehash(admin.password_hash):
        admin.password_hash = _hasher.hash(password)
    return admin


def record_login(session: Session, admin: AdminUser, now: datetime, ip: str) -> None:
    """Note a successful sign-in on the admin and in the audit log."""
    admin.last_login_at = now
    audit(session, admin.email, "admin.login", now, "admin", admin.id, ip=ip)


# --- two-step sign-in (TOTP) --------------------------------------------------------


def new_totp_secret() -> str:
    """Return a fresh base32 secret for an authenticator app."""
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    """Return the otpauth:// URI an authenticator app reads from a QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name="Nudger")


def totp_ok(secret: str, code: str, now: datetime) -> bool:
    """Say whether `code` is valid at `now` (one 30-second step of clock drift allowed)."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return False
    return pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1)


def claim_totp_code(redis, admin_id: int, code: str) -> bool:
    """Use a code once: a code seen by someone looking over a shoulder cannot be replayed."""
    key = f"nudger:totp-used:{admin_id}:{''.join(code.split())}"
    try:
        return bool(redis.set(key, 1, nx=True, ex=120))
    except RedisError:
        log.warning("cannot record a used TOTP code: Redis is unreachable")
        return True


def enable_totp(session: Session, admin: AdminUser, secret: str, code: str, now: datetime) -> bool:
    """Turn on two-step sign-in once the admin's app shows it has the secret; end sessions."""
    if not totp_ok(secret, code, now):
        return False
    admin.totp_secret = secret
    sessions.end_all(session, admin.id, now)
    audit(session, admin.email, "admin.totp_enable", now, "admin", admin.id)
    return True


def disable_totp(session: Session, admin: AdminUser, now: datetime) -> None:
    """Turn off two-step sign-in and end the admin's sessions."""
    admin.totp_secret = None
    sessions.end_all(session, admin.id, now)
    audit(session, admin.email, "admin.totp_disable", now, "admin", admin.id)


def change_password(session: Session, admin: AdminUser, new: str, now: datetime) -> None:
    """Set a new password and end every session of the admin."""
    if len(new) < MIN_PASSWORD:
        raise AdminError(f"the new password must be at least {MIN_PASSWORD} characters")
    admin.password_hash = _hasher.hash(new)
    sessions.end_all(session, admin.id, now)
    audit(session, admin.email, "admin.password", now, "admin", admin.id)
