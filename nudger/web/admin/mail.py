"""Sent mail: the outbox as a ledger, the SMTP answer of failures, retry; worker health."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from nudger.insights import ledger
from nudger.models import Outbox
from nudger.web import db, id_arg, settings
from nudger.web.admin.console import actor, clock, safe_next
from nudger.web.admin.csv import csv_download

bp = Blueprint("mail", __name__)


@bp.get("/mail")
def index():
    now = clock()
    f = ledger.MailFilter.from_args(request.args)
    before = id_arg("before")
    rows, next_before = ledger.page(db(), f, before)
    return render_template(
        "admin/mail.html",
        f=f,
        rows=[(row, ledger.display_state(row, now)) for row in rows],
        counts=ledger.counts(db()),
        cap=ledger.COUNT_CAP,
        kinds=ledger.kinds(),
        labels=ledger.LABELS,
        states=ledger.STATES,
        before=before,
        next_before=next_before,
        health=ledger.health(db(), settings(), now),
        ago=ledger.ago,
        now=now,
    )


@bp.get("/mail.csv")
def export():
    now = clock()
    f = ledger.MailFilter.from_args(request.args)

    def rows(session):
        for r in ledger.iter_all(session, f):
            yield (r.id, r.created_at, r.kind, r.to_email, r.subject or "",
                   ledger.display_state(r, now), r.attempts, r.sent_at, r.last_error or "",
                   r.message_id or "")  # fmt: skip

    header = ["id", "created_at", "kind", "to", "subject", "state", "attempts", "sent_at",
              "smtp_answer", "message_id"]  # fmt: skip
    return csv_download("nudger-mail.csv", header, rows)


@bp.post("/mail/<int:outbox_id>/retry")
def retry(outbox_id: int):
    row = db().get(Outbox, outbox_id) or abort(404)
    to = row.to_email
    if ledger.retry(db(), settings(), outbox_id, clock(), actor()):
        flash(f"Message #{outbox_id} to {to} queued again.")
    else:
        flash(f"Message #{outbox_id} was not failed, so it was left alone.")
    return redirect(safe_next(request.form.get("next"), url_for("admin.mail.index")))
