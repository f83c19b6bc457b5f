"""Signed, purpose-salted link tokens.

A token names one thing and one purpose; a "done" token cannot be replayed as
a "team" token, because each purpose signs with its own salt:

| purpose | subject          | page           | lifetime                              |
|---------|------------------|----------------|---------------------------------------|
| done    | enrolment-step   | /done/<token>  | 1 year; longer while the enrolment is |
|         |                  |                | live, and until 90 days after it ends |
| me      | enrolment        | /me/<token>    | the same as done                      |
| mute    | enrolment        | /mute/<token>  | the same as done                      |
| team    | person (manager) | /team/<token>  | 120 days: each digest has a fresh one |
| prefs   | person (manager) | /prefs/<token> | 1 year                                |
| checkin | check-in         | /checkin/<tok> | 90 days (a checkpoint closes sooner)  |

This module checks the fixed lifetime; the "while the enrolment is live, and
90 days after" extension needs the database and lives in
`nudger.progress.link_alive`. Ages are measured against `now`, so tests and
previews pass the time in rather than freezing it.

Keys rotate by moving the old key into NUDGER_SECRET_KEY_FALLBACKS: links
signed with it keep working, new links use the new key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from nudger.config import Settings
from nudger.db import utcnow

PURPOSES = ("done", "me", "team", "mute", "prefs", "checkin")

# A done link must outlive the journey: the longest journeys run ~16 weeks and
# people finish late, so links stay valid for a year after they were made (and
# longer while the enrolment is live; see progress.link_alive).
MAX_AGE = {
    "done": timedelta(days=365),
    "me": timedelta(days=365),
    "mute": timedelta(days=365),
    "team": timedelta(days=120),
    "prefs": timedelta(days=365),
    # The page says when a checkpoint has closed (10 working days after it opened)
    # for a while after, rather than "this link has expired".
    "checkin": timedelta(days=90),
}
MAX_AGE_SECONDS = {k: int(v.total_seconds()) for k, v in MAX_AGE.items()}

# The path of the page each purpose opens.
PATHS = {
    "done": "done",
    "me": "me",
    "team": "team",
    "mute": "mute",
    "prefs": "prefs",
    "checkin": "checkin",
}


class TokenInvalid(Exception):
    """The token was tampered with, truncated, or made for another purpose."""


class TokenExpired(TokenInvalid):
    """The token was genuine but is past its lifetime; it still names its subject."""

    def __init__(self, subject_id: int, signed_at: datetime) -> None:
        super().__init__("expired")
        self.subject_id = subject_id
        self.signed_at = signed_at


class _Signer(TimestampSigner):
    """A timestamp signer that can sign at a given moment (previews, tests)."""

    def __init__(self, *args, now: datetime | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._now = now

    def get_timestamp(self) -> int:
        return int(self._now.timestamp()) if self._now else super().get_timestamp()


def _serializer(
    settings: Settings, purpose: str, now: datetime | None = None
) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    # itsdangerous signs with the last key and accepts any of them.
    keys = [*settings.secret_key_fallbacks, settings.secret_key]
    return URLSafeTimedSerializer(
        keys, salt=f"nudger.{purpose}", signer=_Signer, signer_kwargs={"now": now}
    )


def make_token(
    settings: Settings, purpose: str, subject_id: int, now: datetime | None = None
) -> str:
    """Return a URL-safe token for `subject_id` and `purpose`, signed at `now`."""
    if type(subject_id) is int and 0 <= subject_id < _SHORT_IDS and purpose in PURPOSES:
        # Every token Nudger makes: the same bytes as the serializer below, which
        # reads them back (tests compare the two), at a third of the cost.
        timestamp = int(now.timestamp()) if now else int(time.time())
        return _sign_id(_signing_key(settings.secret_key, purpose), subject_id, timestamp)
    return _serializer(settings, purpose, now).dumps(subject_id)


# Ids below this serialise to JSON too short for itsdangerous to compress
# (zlib's output is never under 9 bytes; it compresses only when 2 shorter).
_SHORT_IDS = 10**10


@lru_cache(maxsize=64)
def _signing_key(secret_key: str, purpose: str) -> bytes:
    """itsdangerous' "django-concat" key for the salt "nudger.<purpose>" (SHA-1)."""
    return hashlib.sha1(f"nudger.{purpose}".encode() + b"signer" + secret_key.encode()).digest()


def _sign_id(key: bytes, subject_id: int, timestamp: int) -> str:
    """Return URLSafeTimedSerializer(...).dumps(subject_id) for a short id, made directly:
    base64(JSON) "." base64(timestamp) "." base64(HMAC-SHA1 of the two)."""
    payload = _b64(str(subject_id).encode())
    stamp = _b64(timestamp.to_bytes(8, "big").lstrip(b"\x00"))
    value = payload + b"." + stamp
    return (value + b"." + _b64(hmac.digest(key, value, "sha1"))).decode("ascii")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def read_token(settings: Settings, purpose: str, token: str, now: datetime | None = None) -> int:
    """Return the subject id of a token, or raise TokenInvalid / TokenExpired."""
    try:
        value, signed_at = _serializer(settings, purpose).loads(token, return_timestamp=True)
    except BadSignature:
        raise TokenInvalid("bad signature") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenInvalid("unexpected payload")
    signed_at = signed_at.astimezone(UTC)
    # A token "from the future" only means two clocks disagree: its signature is good.
    if (now or utcnow()) - signed_at > MAX_AGE[purpose]:
        raise TokenExpired(value, signed_at)
    return value


def link(
    settings: Settings, path: str, purpose: str, subject_id: int, now: datetime | None = None
) -> str:
    """Return an absolute URL such as https://host/done/<token>."""
    return f"{settings.base_url}/{path}/{make_token(settings, purpose, subject_id, now)}"


def url(settings: Settings, purpose: str, subject_id: int, now: datetime | None = None) -> str:
    """Return the absolute URL of the page for `purpose`, e.g. url(s, "mute", enrolment_id)."""
    return link(settings, PATHS[purpose], purpose, subject_id, now)


# Addresses at NUDGER_INBOUND_DOMAIN name one outbox row: "r-" for replies
# (Reply-To), "b-" for bounces (the envelope sender, VERP). Lower-case hex:
# mail servers may change the case of a local part.
MAILBOX_PREFIXES = {"reply": "r", "bounce": "b"}


def _mailbox_mac(secret_key: str, purpose: str, outbox_id: int) -> str:
    key = hashlib.sha256(f"nudger.mailbox.{purpose}".encode() + secret_key.encode()).digest()
    return hmac.new(key, str(outbox_id).encode(), "sha256").hexdigest()[:20]


def mailbox(settings: Settings, purpose: str, outbox_id: int) -> str:
    """Return the signed address at the inbound domain for replies to, or bounces of, a row."""
    mac = _mailbox_mac(settings.secret_key, purpose, outbox_id)
    return f"{MAILBOX_PREFIXES[purpose]}-{outbox_id}-{mac}@{settings.inbound_domain}"


def read_mailbox(settings: Settings, address: str) -> tuple[str, int] | None:
    """Return (purpose, outbox id) of a signed inbound address, or None if it is not one."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if not settings.inbound_domain or domain.lower() != settings.inbound_domain:
        return None
    parts = local.lower().split("-")
    purposes = {v: k for k, v in MAILBOX_PREFIXES.items()}
    if len(parts) != 3 or parts[0] not in purposes or not parts[1].isdigit():
        return None
    purpose, outbox_id = purposes[parts[0]], int(parts[1])
    if len(parts[1]) > 12:
        return None
    for key in [settings.secret_key, *settings.secret_key_fallbacks]:
        if hmac.compare_digest(_mailbox_mac(key, purpose, outbox_id), parts[2]):
            return purpose, outbox_id
    return None
