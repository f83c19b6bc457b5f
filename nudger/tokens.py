"""Signed, purpose-salted link tokens.

A token names one thing (an enrolment-step, an enrolment, a person) and one
purpose; a "done" token cannot be replayed as a "team" token. Keys rotate by
moving the old key into NUDGER_SECRET_KEY_FALLBACKS: links signed with it
keep working, new links use the new key.
"""

from __future__ import annotations


from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from nudger.config import Settings

PURPOSES = ("done", "me", "team", "mute", "prefs")

# A done link must outlive the journey: the longest journeys run ~16 weeks and
# people finish late, so links stay valid for a year after they were made.
MAX_AGE_SECONDS = {
    "done": 365 * 86400,
    "me": 365 * 86400,
    "team": 120 * 86400,
    "mute": 365 * 86400,
    "prefs": 365 * 86400,
}


class TokenInvalid(Exception):
    """The token was tampered with, truncated, or made for another purpose."""


class TokenExpired(TokenInvalid):
    """The token was genuine but is past its lifetime."""

    def __init__(self, subject_id: int | None) -> None:
        super().__init__("expired")
        self.subject_id = subject_id


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    # itsdangerous signs with the last key and accepts any of them.
    keys = [*settings.secret_key_fallbacks, settings.secret_key]
    return URLSafeTimedSerializer(keys, salt=f"nudger.{purpose}")


def make_token(settings: Settings, purpose: str, subject_id: int) -> str:
    """Return a URL-safe token for `subject_id` and `purpose`."""
    return _serializer(settings, purpose).dumps(subject_id)


def read_token(settings: Settings, purpose: str, token: str) -> int:
    """Return the subject id of a token, or raise TokenInvalid / TokenExpired."""
    serializer = _serializer(settings, purpose)
    try:
        value = serializer.loads(token, max_age=MAX_AGE_SECONDS[purpose])
    except SignatureExpired as exc:
        subject = exc.payload if isinstance(exc.payload, int) else None
        raise TokenExpired(subject) from None
    except BadSignature:
        raise TokenInvalid("bad signature") from None
    if not isinstance(value, int):
        raise TokenInvalid("unexpected payload")
    return value


def link(settings: Settings, path: str, purpose: str, subject_id: int) -> str:
    """Return an absolute URL such as https://host/done/<token>."""
    return f"{settings.base_url}/{path}/{make_token(settings, purpose, subject_id)}"
