"""Reading progress and changing people: reports, ratings, pause, resume, withdraw, erase, prune."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import click

from nudger.cli.common import (
    Context,
    Rejected,
    emit,
    format_json_option,
    format_option,
    json_option,
    parse_now,
    pass_ctx,
)
from nudger.db import utcnow


@click.command()
@click.option("--journey", "journey_slug", help="Only this journey.")
@format_option
@click.option("--now", "now_text", help="Report as of this time (ISO 8601).")
@format_json_option
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


@click.command()
@click.option("--journey", "journey_slug", help="Only this journey.")
@format_option
@format_json_option
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


def _enrolment_command(action: str, help_text: str) -> click.Command:
    @click.command(action, help=help_text)
    @click.argument("email")
    @click.option("--journey", "journey_slug", help="Which journey, if on several.")
    @json_option
    @pass_ctx
    def command(ctx: Context, email: str, journey_slug: str | None, as_json: bool) -> None:
        _change_enrolment(ctx, action, email, journey_slug, as_json)

    return command


ENROLMENT_COMMANDS = [
    _enrolment_command("pause", "Pause an enrolment: nothing is sent until it is resumed."),
    _enrolment_command("resume", "Resume a paused enrolment; pending steps move by the pause."),
    _enrolment_command(
        "withdraw", "Withdraw an enrolment: stop everything, cancel pending invites."
    ),
]


@click.command()
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


@click.command()
@click.option("--now", "now_text", help="Prune as if it were this time (ISO 8601).")
@json_option
@pass_ctx
def prune(ctx: Context, now_text: str | None, as_json: bool) -> None:
    """Delete stored mail and old history (NUDGER_RETAIN_MAIL_DAYS, NUDGER_RETAIN_HISTORY_DAYS)."""
    from nudger.privacy.retention import prune_history, prune_mail

    now, days = parse_now(now_text), ctx.settings.retain_mail_days
    history_days = ctx.settings.retain_history_days
    with ctx.session() as session:
        pruned = prune_mail(session, now, days)
        history = prune_history(session, now, history_days)
    mail = (
        f"Pruned mail older than {days} days "
        f"(before {now - timedelta(days=days):%Y-%m-%d %H:%M} UTC): "
        f"{pruned.stored_copies} stored copies deleted, {pruned.subjects} subjects removed; "
        "the ledger rows stay."
        if days >= 1
        else f"NUDGER_RETAIN_MAIL_DAYS is {days}: stored mail is kept; nothing pruned."
    )
    kept = (
        f"Pruned history older than {history_days} days: {history.ledger_rows} ledger rows, "
        f"{history.link_hits} link hits, {history.inbound_messages} inbound messages, "
        f"{history.webhook_deliveries} webhook deliveries and {history.events} events deleted."
        if history_days >= 1
        else f"NUDGER_RETAIN_HISTORY_DAYS is {history_days}: the ledger and link hits are kept."
    )
    emit(
        as_json,
        {
            "now": now.isoformat(),
            "retain_mail_days": days,
            "stored_copies": pruned.stored_copies,
            "subjects": pruned.subjects,
            "retain_history_days": history_days,
            "ledger_rows": history.ledger_rows,
            "link_hits": history.link_hits,
            "inbound_messages": history.inbound_messages,
            "webhook_deliveries": history.webhook_deliveries,
            "events": history.events,
        },
        f"{mail}\n{kept}",
    )
