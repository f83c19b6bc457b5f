"""Setting Nudger up: the schema, journeys, learners and admins."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nudger.cli.common import (
    Context,
    Rejected,
    emit,
    json_option,
    parse_now,
    pass_ctx,
)
from nudger.db import utcnow
from nudger.wording import ngettext


@click.command()
@json_option
@pass_ctx
def init(ctx: Context, as_json: bool) -> None:
    """Create or upgrade the database schema."""
    from nudger.migrate import current_revision, upgrade

    before = current_revision(ctx.settings)
    upgrade(ctx.settings)
    after = current_revision(ctx.settings)
    emit(
        as_json,
        {"database": _safe_url(ctx.settings.database_url), "from": before, "to": after},
        f"Database {_safe_url(ctx.settings.database_url)} is at revision {after}"
        + (" (unchanged)" if before == after else f" (was {before or 'empty'})"),
    )


def _safe_url(url: str) -> str:
    """Hide a password in a database URL."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.group()
def journeys() -> None:
    """Check and load journey files."""


def _load_specs(paths: tuple[str, ...], default: Path):
    from nudger.journeys.loading import JourneyError, load_journeys

    try:
        return load_journeys(list(paths) or [default])
    except JourneyError as exc:
        raise Rejected(str(exc)) from None


@journeys.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@json_option
@pass_ctx
def journeys_check(ctx: Context, paths: tuple[str, ...], as_json: bool) -> None:
    """Validate journey files; errors name the file, line and field."""
    from nudger.journeys.loading import JourneyError, load_journeys

    try:
        specs = load_journeys(list(paths) or [ctx.settings.journeys_dir])
    except JourneyError as exc:
        if as_json:
            problems = [p.__dict__ for p in exc.problems]
            click.echo(json.dumps({"ok": False, "problems": problems}))
            sys.exit(1)
        raise Rejected(str(exc)) from None
    emit(
        as_json,
        {"ok": True, "journeys": [s.slug for s in specs]},
        "\n".join(
            f"ok  {s.slug}: {s.title} ({ngettext('%(num)d step', '%(num)d steps', len(s.steps))})"
            for s in specs
        ),
    )


@journeys.command("sync")
@click.argument("directory", required=False, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Show what would change, write nothing.")
@click.option("--now", "now_text", help="Decide as if it were this time (ISO 8601).")
@json_option
@pass_ctx
def journeys_sync(
    ctx: Context, directory: str | None, dry_run: bool, now_text: str | None, as_json: bool
) -> None:
    """Validate journey files and load them into the database."""
    from nudger.enrolments.journey_edits import apply_sync, plan_sync

    specs = _load_specs((directory,) if directory else (), ctx.settings.journeys_dir)
    now, country = parse_now(now_text), ctx.settings.default_country
    with ctx.session() as session:
        if dry_run:
            changes = [plan_sync(session, s, now, default_country=country) for s in specs]
        else:
            changes = [apply_sync(session, s, now, default_country=country) for s in specs]
            session.commit()
    lines = [c.describe() for c in changes]
    if dry_run:
        lines.append("Dry run: nothing written.")
    emit(
        as_json, {"dry_run": dry_run, "journeys": [c.to_json() for c in changes]}, "\n".join(lines)
    )


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--journey", "journey_slug", help="Journey slug for rows without a journey column.")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@json_option
@pass_ctx
def import_(
    ctx: Context, file: str, journey_slug: str | None, dry_run: bool, as_json: bool
) -> None:
    """Enrol learners from a CSV: all rows valid, or nothing written."""
    from nudger.roster import import_roster

    with ctx.session() as session:
        result = import_roster(
            session,
            ctx.settings,
            Path(file),
            filename=Path(file).name,
            journey_slug=journey_slug,
            dry_run=dry_run,
            now=utcnow(),
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), default=str))
        sys.exit(0 if result.ok else 1)
    for w in result.warnings:
        click.echo(f"warning: {file}: row {w.row}: {w.field}: {w.message}", err=True)
    if not result.ok:
        for e in result.errors[:200]:
            field = f" {e.field}:" if e.field else ""
            click.echo(f"{file}: row {e.row}:{field} {e.message}", err=True)
        if len(result.errors) > 200:
            more = len(result.errors) - 200
            click.echo(
                ngettext("... and %(num)d more error", "... and %(num)d more errors", more),
                err=True,
            )
        click.echo(f"Rejected: {result.error_summary()}; nothing written.")
        sys.exit(1)
    verb = "Would enrol" if dry_run else "Enrolled"
    learners = ngettext("%(num)d learner", "%(num)d learners", result.enrolments_created)
    people = ngettext("%(num)d new person", "%(num)d new people", result.people_created)
    unchanged = ngettext("%(num)d row unchanged", "%(num)d rows unchanged", result.unchanged)
    rows = ngettext("%(num)d row", "%(num)d rows", result.rows)
    click.echo(
        f"{verb} {learners} ({people}, {result.people_updated} updated, {unchanged}) "
        f"from {rows}." + (" Dry run: nothing written." if dry_run else "")
    )


@click.command("create-admin")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
@pass_ctx
def create_admin(ctx: Context, email: str, password_stdin: bool, as_json: bool) -> None:
    """Create an admin user (or set a new password for one)."""
    from nudger.admins import AdminError, admin_email, check_new_password, create_or_update_admin

    try:
        admin_email(email)  # a typo in the address is said before any password is asked
    except AdminError as exc:
        raise Rejected(str(exc)) from None

    def acceptable(password: str) -> str:
        try:
            check_new_password(password)
        except AdminError as exc:
            raise click.UsageError(f"{exc}; try again") from None
        return password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        # Checked as soon as it is typed, not after typing it twice.
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt=True, value_proc=acceptable, err=True
        )
    with ctx.session() as session:
        try:
            created = create_or_update_admin(session, email, password, utcnow())
        except AdminError as exc:
            raise Rejected(str(exc)) from None
        session.commit()
    emit(
        as_json,
        {"email": email.lower(), "created": created},
        f"Admin {email.lower()} {'created' if created else 'updated'}.",
    )
