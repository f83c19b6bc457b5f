"""Journeys: steps on a timeline, every email they send previewed, and "send me a test"."""

from __future__ import annotations

import secrets

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from sqlmodel import func, select

from nudger import outbox
from nudger.audit import record as audit
from nudger.insights import charts
from nudger.mail import previews
from nudger.mail.previews import message_parts as mail_parts
from nudger.models import Enrolment, Journey
from nudger.progress import offered_notes
from nudger.web import db, settings
from nudger.web.admin.console import clock, current_admin
from nudger.web.downloads import attachment

bp = Blueprint("journeys", __name__)

# The preview is a sandboxed frame: no scripts, no forms, inline styles only. It
# keeps its origin so that the page can size the frame to it (static/frames.js);
# with no script able to run inside, that gives the email no power over the page.
FRAME_CSP = (
    "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
    "style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
)


def _journey(slug: str) -> Journey:
    return db().exec(select(Journey).where(Journey.slug == slug)).first() or abort(404)


@bp.get("/journeys")
def index():
    counts = dict(
        db().exec(select(Enrolment.journey_id, func.count()).group_by(Enrolment.journey_id)).all()
    )
    journeys = db().exec(select(Journey).order_by(Journey.title)).all()
    return render_template("admin/journeys.html", journeys=journeys, counts=counts)


@bp.get("/journeys/<slug>")
def show(slug: str):
    journey = _journey(slug)
    plan, steps = previews.load_plan(db(), journey)
    chart = charts.timeline(
        "timeline",
        f"{journey.title}: when each step is sent and due",
        [(f"{s.position + 1}. {s.title}", s.day, s.due_after) for s in plan.steps],
        plan.reminders,
        plan.escalations,
    )
    return render_template(
        "admin/journey.html",
        journey=journey,
        plan=plan,
        steps=steps,
        chart=chart,
        emails=previews.previews(plan),
        notes=offered_notes(db(), journey.id),
    )


def _preview(slug: str, key: str):
    journey = _journey(slug)
    try:
        msg = previews.build_preview(db(), settings(), journey, key, clock())
    except previews.PreviewNotFound:
        abort(404)
    return journey, msg


@bp.get("/journeys/<slug>/emails/<key>")
def email(slug: str, key: str):
    journey, msg = _preview(slug, key)
    raw = msg.as_bytes()
    plan, _ = previews.load_plan(db(), journey)
    entries = previews.previews(plan)
    current = next(p for p in entries if p.key == key)
    return render_template(
        "admin/email_preview.html",
        journey=journey,
        preview=current,
        emails=entries,
        subject=str(msg["Subject"]),
        parts=mail_parts(raw),
        nonce=secrets.token_urlsafe(12),
        size=len(raw),
    )


@bp.get("/journeys/<slug>/emails/<key>/html")
def email_html(slug: str, key: str):
    msg = _preview(slug, key)[1]
    html = mail_parts(msg.as_bytes())["html"] or ""
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = FRAME_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.get("/journeys/<slug>/emails/<key>.eml")
def email_eml(slug: str, key: str):
    msg = _preview(slug, key)[1]
    name = f"{slug}-{key.replace(':', '-')}"
    return attachment(msg.as_bytes(), "message/rfc822", f"{name}.eml")


@bp.post("/journeys/<slug>/emails/<key>/test")
def send_test(slug: str, key: str):
    journey, _msg = _preview(slug, key)
    admin, now, session = current_admin(), clock(), db()
    # The nonce comes from the page: a double click sends one test, a second press another.
    nonce = request.form.get("nonce", "")[:40] or secrets.token_urlsafe(12)
    message = {
        "dedupe_key": f"test:{admin.id}:{nonce}",
        "kind": "test",
        "to_email": admin.email,
        "payload": {"journey_id": journey.id, "preview": key},
    }
    added = outbox.add(session, [message], now)
    outbox_id = added[0].id if added else None
    if outbox_id is not None:
        audit(session, admin.email, "email.test", now, "outbox", outbox_id,
              journey=journey.slug, preview=key)  # fmt: skip
    session.commit()
    if outbox_id is not None:
        queued = outbox.enqueue_committed(session, settings(), [outbox_id], now)
        later = "" if queued else " (the queue is unreachable: the clock will send it)"
        flash(f"Test email queued to {admin.email}{later}. Follow it in Sent mail.")
    else:
        flash(f"That test was already sent to {admin.email}.")
    return redirect(url_for("admin.journeys.email", slug=slug, key=key))
