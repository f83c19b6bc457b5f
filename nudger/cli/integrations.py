"""Webhook endpoints: add (the secret is printed once), list, enable, remove."""

from __future__ import annotations

import click

from nudger.cli.common import Context, Rejected, emit, json_option, pass_ctx
from nudger.db import utcnow


@click.group()
def webhooks() -> None:
    """Webhook endpoints that receive events, signed per Standard Webhooks."""


@webhooks.command("add")
@click.argument("url")
@click.option(
    "--events",
    "types",
    required=True,
    help="Comma-separated event types (step.completed,escalation.raised,...), or * for all.",
)
@click.option("--description", default="", help="What the endpoint is for.")
@json_option
@pass_ctx
def add(ctx: Context, url: str, types: str, description: str, as_json: bool) -> None:
    """Add an endpoint; prints its signing secret, which is shown only this once."""
    from nudger import webhooks as hooks

    try:
        names = hooks.parse_types(types)
        with ctx.session() as session:
            endpoint, secret = hooks.add_endpoint(
                session,
                url,
                names,
                utcnow(),
                description=description,
                allow_private=ctx.settings.webhook_allow_private,
            )
            data = {**hooks.endpoint_json(endpoint), "secret": secret}
    except hooks.BadEndpoint as e:
        raise Rejected(f"{e}; nothing added") from None
    emit(
        as_json,
        data,
        f"Added webhook {data['id']}: {url}\nEvents: {', '.join(names)}\n"
        f"Secret (shown only now; verify signatures with it): {secret}",
    )


@webhooks.command("list")
@json_option
@pass_ctx
def list_(ctx: Context, as_json: bool) -> None:
    """List endpoints, whether each is on, and since when one is failing."""
    from nudger import webhooks as hooks

    with ctx.session() as session:
        rows = [hooks.endpoint_json(e) for e in hooks.list_endpoints(session)]
    lines = []
    for row in rows:
        state = "enabled" if row["enabled"] else f"DISABLED ({row['disabled_reason']})"
        if row["enabled"] and row["failing_since"]:
            state += f", failing since {row['failing_since']}"
        lines.append(f"{row['id']:>4}  {row['url']}  [{', '.join(row['events'])}]  {state}")
    emit(as_json, {"webhooks": rows}, "\n".join(lines) or "No webhook endpoints.")


def _endpoint_id(value: str) -> int:
    if not value.isdigit() or int(value) > 2**31 - 1:
        raise Rejected(f"{value!r} is not a webhook id (see `nudger webhooks list`)")
    return int(value)


@webhooks.command("remove")
@click.argument("endpoint_id")
@json_option
@pass_ctx
def remove(ctx: Context, endpoint_id: str, as_json: bool) -> None:
    """Remove an endpoint with its delivery log."""
    from nudger import webhooks as hooks

    number = _endpoint_id(endpoint_id)
    try:
        with ctx.session() as session:
            url = hooks.remove_endpoint(session, number, utcnow())
    except hooks.NotFound:
        raise Rejected(f"no webhook {number}; nothing removed") from None
    emit(as_json, {"removed": number, "url": url}, f"Removed webhook {number}: {url}")


@webhooks.command("enable")
@click.argument("endpoint_id")
@json_option
@pass_ctx
def enable(ctx: Context, endpoint_id: str, as_json: bool) -> None:
    """Turn a disabled endpoint back on; deliveries still pending go out again."""
    from nudger import webhooks as hooks

    number = _endpoint_id(endpoint_id)
    try:
        with ctx.session() as session:
            hooks.enable_endpoint(session, number, utcnow())
    except hooks.NotFound:
        raise Rejected(f"no webhook {number}; nothing changed") from None
    emit(as_json, {"enabled": number}, f"Webhook {number} is on again.")
