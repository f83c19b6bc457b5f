"""Webhook endpoints: list, add (the secret shown once), enable, remove; the delivery log."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from nudger import events, webhooks
from nudger.web import db, settings
from nudger.web.admin.console import actor, clock

bp = Blueprint("webhooks", __name__)


def _page(**extra):
    session = db()
    endpoints = webhooks.list_endpoints(session)
    return render_template(
        "admin/webhooks.html",
        endpoints=endpoints,
        disabled=[e for e in endpoints if not e.enabled],
        log=webhooks.delivery_log(session),
        types=events.TYPES,
        xapi_url=settings().xapi_url,
        **extra,
    )


@bp.get("/webhooks")
def index():
    return _page()


@bp.post("/webhooks")
def add():
    url = request.form.get("url", "").strip()
    chosen = request.form.getlist("events")
    try:
        endpoint, secret = webhooks.add_endpoint(
            db(),
            url,
            chosen,
            clock(),
            description=request.form.get("description", "").strip(),
            actor=actor(),
            allow_private=settings().webhook_allow_private,
        )
    except webhooks.BadEndpoint as e:
        db().rollback()
        return _page(error=str(e), form_url=url, form_events=chosen), 400
    # Shown in this answer only: never in a redirect, a flash cookie or a later page.
    return _page(new_secret=secret, new_endpoint=endpoint)


@bp.post("/webhooks/<int:endpoint_id>/remove")
def remove(endpoint_id: int):
    try:
        url = webhooks.remove_endpoint(db(), endpoint_id, clock(), actor())
    except webhooks.NotFound:
        abort(404)
    flash(f"Removed the webhook to {url}.")
    return redirect(url_for("admin.webhooks.index"), 303)


@bp.post("/webhooks/<int:endpoint_id>/enable")
def enable(endpoint_id: int):
    try:
        webhooks.enable_endpoint(db(), endpoint_id, clock(), actor())
    except webhooks.NotFound:
        abort(404)
    webhooks.kick(settings())
    flash(f"Webhook {endpoint_id} is on again; deliveries still pending go out now.")
    return redirect(url_for("admin.webhooks.index"), 303)


@bp.post("/webhooks/deliveries/<int:delivery_id>/redeliver")
def redeliver(delivery_id: int):
    try:
        delivery = webhooks.redeliver(db(), delivery_id, clock(), actor())
    except webhooks.NotFound:
        abort(404)
    webhooks.kick(settings())
    flash(f"Delivery {delivery.message_id} queued again (same webhook-id).")
    return redirect(url_for("admin.webhooks.index"), 303)
