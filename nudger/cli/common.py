"""What every command shares: settings and a session, --json, errors a person can read."""

from __future__ import annotations

import gc
import json
import logging
from datetime import UTC, datetime
from typing import Any

import click
from sqlmodel import Session

from nudger.config import (
    MailNotConfigured,
    SettingError,
    Settings,
    load_settings,
    require_mail,
)
from nudger.db import get_engine, utcnow


class Rejected(click.ClickException):
    """Input was refused; nothing was written (exit 1)."""

    exit_code = 1


def emit(as_json: bool, data: dict[str, Any], human: str) -> None:
    """Print one JSON object or the human summary."""
    if as_json:
        click.echo(json.dumps(data, default=str, indent=None))
    else:
        click.echo(human)


def freeze_imports() -> None:
    """Keep what is loaded so far out of the garbage collector's passes.

    Modules, classes and compiled templates live as long as the process; a
    full collection would walk all of them again and again while a tick or a
    send batch makes many short-lived objects.
    """
    gc.freeze()


def parse_now(value: str | None) -> datetime:
    """Read --now as ISO 8601; a value without a zone is taken as UTC."""
    if not value:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint="--now") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class Context:
    """Settings and a lazily opened database, shared by the subcommands."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def session(self) -> Session:
        return Session(get_engine(self.settings.database_url), expire_on_commit=False)

    def mail_settings(self) -> Settings:
        """Return the settings, refusing to go on without NUDGER_SMTP_URL."""
        try:
            return require_mail(self.settings)
        except MailNotConfigured as exc:
            raise click.ClickException(str(exc)) from None


pass_ctx = click.make_pass_decorator(Context, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
# Commands that print a table can print CSV or JSON too; --json is --format json.
format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
    show_default=True,
)  # fmt: skip
format_json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object (--format json)."
)


class NudgerGroup(click.Group):
    """Turn unexpected failures into one readable line instead of a stack trace."""

    def invoke(self, ctx: click.Context):
        from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except SettingError as exc:
            raise click.ClickException(str(exc)) from None
        except (OperationalError, ProgrammingError) as exc:
            logging.getLogger("nudger").debug("database error", exc_info=True)
            first = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
            raise click.ClickException(
                f"database error: {first}. Is the database reachable and "
                "initialised (`nudger init`)?"
            ) from None
        except SQLAlchemyError:
            # str() of these holds the SQL statement and its parameters: people's data.
            logging.getLogger("nudger").debug("database error", exc_info=True)
            raise click.ClickException(
                "database error: the database refused the change (run with -v for details)"
            ) from None
        except Exception as exc:
            logging.getLogger("nudger").debug("unexpected error", exc_info=True)
            raise click.ClickException(
                f"unexpected error: {type(exc).__name__}: {exc} (run with -v for details)"
            ) from None


port_option = click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
