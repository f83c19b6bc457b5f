"""The commands that do the work: tick, worker, clock, web and the demo."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from nudger.cli.common import (
    Context,
    emit,
    freeze_imports,
    json_option,
    parse_now,
    pass_ctx,
    port_option,
)
from nudger.config import (
    capture_mail_unless_set,
)


@click.command()
@click.option("--now", "now_text", help="Decide as if it were this time (ISO 8601).")
@click.option("--no-enqueue", is_flag=True, help="Write outbox rows but enqueue nothing.")
@json_option
@pass_ctx
def tick(ctx: Context, now_text: str | None, no_enqueue: bool, as_json: bool) -> None:
    """Decide and enqueue all work due at `now`."""
    from nudger.summaries import describe_tick
    from nudger.tick.run import tick as run_tick

    freeze_imports()
    now = parse_now(now_text)
    with ctx.session() as session:
        counts = run_tick(session, ctx.settings, now, enqueue=not no_enqueue)
    emit(as_json, {"now": now.isoformat(), **counts}, describe_tick(now, counts, not no_enqueue))


@click.command()
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
        freeze_imports()
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


@click.command()
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


@click.command()
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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2525, show_default=True, type=click.IntRange(1, 65535))
@json_option
@pass_ctx
def inbound(ctx: Context, host: str, port: int, as_json: bool) -> None:
    """Receive replies and bounces over SMTP for NUDGER_INBOUND_DOMAIN (point its MX here)."""
    import time

    from nudger.db import get_engine
    from nudger.inbound.server import start_server
    from nudger.serving import must_listen, until_stopped

    settings = ctx.settings
    if not settings.inbound_domain:
        raise click.UsageError(
            "NUDGER_INBOUND_DOMAIN is not set: set it to the domain whose mail comes here "
            "(e.g. reply.example.com), the domain in the Reply-To of Nudger's emails"
        )
    must_listen(host, port, "inbound")
    engine = get_engine(settings.database_url)
    with until_stopped():
        controller = start_server(settings, engine, host, port)
        try:
            emit(
                as_json,
                {"host": host, "port": port, "domain": settings.inbound_domain},
                f"Receiving mail for {settings.inbound_domain} on {host}:{port} (Ctrl-C stops).",
            )
            sys.stdout.flush()
            while True:
                time.sleep(3600)
        finally:
            controller.stop()


@click.command()
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
