"""The `nudger` command.

Exit codes: 0 success, 1 input rejected (nothing written), 2 usage error.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlmodel import Session

from nudger.config import (
    MailNotConfigured,
    Settings,
    capture_mail_unless_set,
    load_settings,
    require_mail,
)
from nudger.db import get_engine, utcnow
from nudger.wording import ngettext


class Rejected(click.ClickException):
    """Input was refused; nothing was written (exit 1)."""

    exit_code = 1


def emit(as_json: bool, data: dict[str, Any], human: str) -> None:
    """Print one JSON object or the human summary."""
    if as_json:
        click.echo(json.dumps(data, default=str, indent=None))
    else:
        click.echo(human)


def _freeze_imports() -> None:
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


class NudgerGroup(click.Group):
    """Turn unexpected failures into one readable line instead of a stack trace."""

    def invoke(self, ctx: click.Context):
        from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
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


@click.group(cls=NudgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nudger", message="nudger %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def main(verbose: bool) -> None:
    """Nudger: learning journeys delivered step by step, by email."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
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


@main.group()
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


@main.command("import")
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


@main.command()
@click.option("--now", "now_text", help="Decide as if it were this time (ISO 8601).")
@click.option("--no-enqueue", is_flag=True, help="Write outbox rows but enqueue nothing.")
@json_option
@pass_ctx
def tick(ctx: Context, now_text: str | None, no_enqueue: bool, as_json: bool) -> None:
    """Decide and enqueue all work due at `now`."""
    from nudger.summaries import describe_tick
    from nudger.tick.run import tick as run_tick

    _freeze_imports()
    now = parse_now(now_text)
    with ctx.session() as session:
        counts = run_tick(session, ctx.settings, now, enqueue=not no_enqueue)
    emit(as_json, {"now": now.isoformat(), **counts}, describe_tick(now, counts, not no_enqueue))


@main.command()
@click.option("--burst", is_flag=True, help="Drain the queues and exit.")
@json_option
@pass_ctx
def worker(ctx: Context, burst: bool, as_json: bool) -> None:
    """Run an RQ worker on Nudger's queues; Ctrl-C stops it after the job in hand."""
    from nudger.queue import QUEUES, queue, redis_connection
    from nudger.serving import until_stopped
    from nudger.summaries import describe_sending, plural
    from workers.jobs import warm_up
    from workers.worker import NudgerWorker

    settings = ctx.mail_settings()
    w: NudgerWorker | None = None
    with until_stopped():
        # Templates compiled once, here: send jobs run in this process, and every
        # other job's forked work horse inherits them.
        warm_up()
        _freeze_imports()
        conn = redis_connection(settings)
        w = NudgerWorker([queue(settings, q) for q in QUEUES], connection=conn)
        w.work(burst=burst, logging_level="INFO" if not burst else "WARNING")
    tally = w.tally if w is not None else {}
    emails = {k.removeprefix("emails_"): v for k, v in tally.items() if k.startswith("emails_")}
    jobs, failed_jobs = tally.get("jobs", 0), tally.get("failed_jobs", 0)
    emit(
        as_json,
        {"burst": burst, "jobs": jobs, "failed_jobs": failed_jobs, "emails": emails},
        f"{'Queues drained' if burst else 'Worker stopped'}: {plural(jobs, 'job')} done, "
        f"{failed_jobs} failed; {describe_sending(emails)}.",
    )


@main.command()
@json_option
@pass_ctx
def clock(ctx: Context, as_json: bool) -> None:
    """Run the tick every minute. Run exactly one clock."""
    from collections import Counter

    from nudger.serving import until_stopped
    from nudger.summaries import plural
    from workers.clock import run_forever

    settings = ctx.mail_settings()  # what it queues is for workers that send it
    logging.getLogger("nudger").setLevel(logging.INFO)
    click.echo("Clock started: ticking every minute (Ctrl-C to stop).", err=as_json)
    totals: Counter[str] = Counter()
    with until_stopped():
        run_forever(settings, totals=totals)
    ticks, failed = totals.pop("ticks", 0), totals.pop("failed_ticks", 0)
    human = (
        f"Clock stopped after {plural(ticks, 'tick')}: "
        f"{plural(totals.get('enqueued', 0), 'email')} queued for sending"
        + (f"; {failed} failed (see the log above)" if failed else "")
        + "."
    )
    emit(as_json, {"ticks": ticks, "failed_ticks": failed, **dict(sorted(totals.items()))}, human)


port_option = click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@port_option
@json_option
@pass_ctx
def web(ctx: Context, host: str, port: int, as_json: bool) -> None:
    """Serve the web app (development server; use gunicorn nudger.wsgi:app in production)."""
    from werkzeug.serving import make_server

    from nudger import create_app
    from nudger.serving import must_listen, until_stopped

    must_listen(host, port, "web")
    settings = capture_mail_unless_set(ctx.settings)
    if settings.smtp_url != ctx.settings.smtp_url:
        click.echo(
            f"NUDGER_SMTP_URL is not set: mail is captured, not sent, and shown at "
            f"http://{host}:{port}/outbox (development only).",
            err=as_json,
        )
    with until_stopped():
        server = make_server(host, port, create_app(settings), threaded=True)
        url = f"http://{host}:{port}"
        emit(as_json, {"url": url}, f"Serving {url} (development server; Ctrl-C stops).")
        server.serve_forever()


@main.command()
@click.option("--journey", "journey_slug", help="Only this journey.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--now", "now_text", help="Report as of this time (ISO 8601).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (--format json).")
@pass_ctx
def report(
    ctx: Context, journey_slug: str | None, fmt: str, now_text: str | None, as_json: bool
) -> None:
    """Progress of every enrolment, step by step."""
    from nudger.insights.reports import as_csv, as_table, journey_slugs, progress

    if as_json and fmt not in ("table", "json"):
        raise click.UsageError(f"--json and --format {fmt} ask for two formats; choose one")
    now = parse_now(now_text)
    with ctx.session() as session:
        if journey_slug:
            known = journey_slugs(session)
            if journey_slug not in known:
                listed = ", ".join(known) or "none yet (load them with `nudger journeys sync`)"
                raise Rejected(f"no journey {journey_slug!r}; the journeys are: {listed}")
        rows = progress(session, now, journey_slug)
        if as_json or fmt == "json":
            click.echo(json.dumps({"enrolments": list(rows)}))
        elif fmt == "csv":
            click.echo(as_csv(rows), nl=False)
        else:
            click.echo(as_table(rows))


@main.command()
@click.option("--journey", "journey_slug", help="Only this journey.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (--format json).")
@pass_ctx
def ratings(ctx: Context, journey_slug: str | None, fmt: str, as_json: bool) -> None:
    """How each journey's behaviours moved: pairs, start, latest, improved; response rates."""
    from nudger.measure.results import all_figures
    from nudger.measure.summary import as_csv, as_table

    with ctx.session() as session:
        figures = all_figures(session, journey_slug)
    if journey_slug and not figures:
        click.echo(f"error: no journey {journey_slug!r}", err=True)
        sys.exit(1)
    if fmt == "json" or as_json:
        click.echo(json.dumps({"journeys": [f.to_json() for f in figures]}))
    elif fmt == "csv":
        click.echo(as_csv(figures), nl=False)
    else:
        click.echo(as_table(figures))


def _change_enrolment(
    ctx: Context, action: str, email: str, journey_slug: str | None, as_json: bool
):
    from nudger.enrolments import changes as enrolments

    with ctx.session() as session:
        try:
            enrolment = enrolments.find_enrolment(session, email, journey_slug)
        except enrolments.AmbiguousEnrolment as exc:
            raise Rejected(f"{email} is on several journeys ({exc}); add --journey SLUG") from None
        except enrolments.EnrolmentNotFound:
            where = f" on {journey_slug}" if journey_slug else ""
            raise Rejected(f"no enrolment for {email}{where}") from None
        changed = getattr(enrolments, action)(
            session, enrolment, utcnow(), default_country=ctx.settings.default_country
        )
        session.commit()
        status = enrolment.status
    emit(
        as_json,
        {"email": email, "changed": changed, "status": status},
        f"{email}: {status}" + ("" if changed else f" (already {status}; nothing changed)"),
    )


def _enrolment_command(action: str, help_text: str) -> None:
    @main.command(action, help=help_text)
    @click.argument("email")
    @click.option("--journey", "journey_slug", help="Which journey, if on several.")
    @json_option
    @pass_ctx
    def command(ctx: Context, email: str, journey_slug: str | None, as_json: bool) -> None:
        _change_enrolment(ctx, action, email, journey_slug, as_json)


_enrolment_command("pause", "Pause an enrolment: nothing is sent until it is resumed.")
_enrolment_command("resume", "Resume a paused enrolment; pending steps move by the pause.")
_enrolment_command("withdraw", "Withdraw an enrolment: stop everything, cancel pending invites.")


@main.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Erase without asking for confirmation.")
@json_option
@pass_ctx
def erase(ctx: Context, email: str, yes: bool, as_json: bool) -> None:
    """Erase a person's personal data; their anonymous progress stays in the counts."""
    from nudger.privacy import erasure

    now = utcnow()
    with ctx.session() as session:
        try:
            person = erasure.find_person(session, email)
        except erasure.PersonNotFound:
            raise Rejected(f"no person has the address {email.strip()!r}; nothing erased") from None
        plan = erasure.describe_erasure(session, person.id)
        if plan.already_erased:
            emit(
                as_json,
                {"erased": False, **plan.to_json()},
                f"Person {plan.person_id}'s personal data was already erased "
                f"on {plan.erased_at:%Y-%m-%d %H:%M} UTC; nothing changed.",
            )
            return
        if not yes:
            # The plan goes to stderr so that --json keeps stdout to one object.
            click.echo(f"Erasing person {plan.person_id} removes:", err=True)
            for line in plan.describe():
                click.echo(f"  {line}", err=True)
            if not click.confirm("Erase this person's personal data?", err=True):
                raise Rejected("nothing erased")
        done = erasure.erase_person(session, person.id, actor="cli", now=now)
    lines = [f"Erased person {done.person_id}'s personal data:"]
    lines += [f"  {line}" for line in done.describe()]
    emit(as_json, {"erased": True, **done.to_json()}, "\n".join(lines))


@main.command()
@click.option("--now", "now_text", help="Prune as if it were this time (ISO 8601).")
@json_option
@pass_ctx
def prune(ctx: Context, now_text: str | None, as_json: bool) -> None:
    """Delete stored copies and subjects of mail older than NUDGER_RETAIN_MAIL_DAYS."""
    from nudger.privacy.retention import prune_mail

    now, days = parse_now(now_text), ctx.settings.retain_mail_days
    if days < 1:
        emit(
            as_json,
            {"now": now.isoformat(), "retain_mail_days": days, "stored_copies": 0, "subjects": 0},
            f"NUDGER_RETAIN_MAIL_DAYS is {days}: stored mail is kept; nothing pruned.",
        )
        return
    with ctx.session() as session:
        pruned = prune_mail(session, now, days)
    cutoff = now - timedelta(days=days)
    emit(
        as_json,
        {
            "now": now.isoformat(),
            "retain_mail_days": days,
            "stored_copies": pruned.stored_copies,
            "subjects": pruned.subjects,
        },
        f"Pruned mail older than {days} days (before {cutoff:%Y-%m-%d %H:%M} UTC): "
        f"{pruned.stored_copies} stored copies deleted, {pruned.subjects} subjects removed; "
        "the ledger rows stay.",
    )


@main.command("create-admin")
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@port_option
@click.option("--no-browser-hint", is_flag=True, hidden=True)
@click.option(
    "--instance-path",
    type=click.Path(file_okay=False, path_type=Path),
    hidden=True,
    help="Keep the demo's data here instead of instance/demo.",
)
@json_option
def demo(
    host: str, port: int, no_browser_hint: bool, instance_path: Path | None, as_json: bool
) -> None:
    """Run everything in one process on the embedded default, with example data."""
    import contextlib

    from nudger.demo import run_demo
    from nudger.serving import must_listen, until_stopped

    must_listen(host, port, "demo")  # before minutes of set-up, not after

    def ready(urls: dict[str, str]) -> None:
        if as_json:
            click.echo(json.dumps(urls), file=out)

    out = sys.stdout
    # With --json, stdout carries only the JSON object; the words go to stderr.
    words = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with until_stopped(), words:
        run_demo(host, port, instance_path=instance_path, on_ready=ready)


if __name__ == "__main__":
    main()
