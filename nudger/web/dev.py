"""/outbox: mail captured by the `outbox:` transport, for development only.

The blueprint is registered only when NUDGER_SMTP_URL is `outbox:` (see
nudger.web.init_app); every view also refuses to run otherwise, so no
configuration mistake can publish captured mail from a production server.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from sqlalchemy import delete, func
from sqlmodel import select

from nudger.mail.render import KINDS
from nudger.mail.view import framed_html, read
from nudger.models import CapturedMail
from nudger.web import db, id_arg, settings
from nudger.web.downloads import attachment

bp = Blueprint("dev", __name__)

PAGE = 50
# The email's HTML runs in a sandbox: no scripts, no forms, nothing fetched; a
# click on a link (the "Mark as done" button) opens a new, unsandboxed tab, as a
# mail client would. It keeps its origin so that the page around it can measure
# its height (static/frames.js); with no script able to run inside, that gives
# the email no power over the page. Only /outbox's own page may frame it
# (every other page refuses to be framed at all).
FRAME_POLICY = (
    "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox; "
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "frame-ancestors 'self'"
)
IFRAME_SANDBOX = "allow-same-origin allow-popups allow-popups-to-escape-sandbox"


@bp.before_request
def only_when_capturing():
    if not settings().captures_mail:
        abort(404)


@bp.get("/outbox")
def outbox_list():
    kind = request.args.get("kind", "")
    to = request.args.get("to", "").strip().lower()
    before = id_arg("before")
    query = select(CapturedMail)
    if kind:
        query = query.where(CapturedMail.kind == kind)
    if to:
        query = query.where(func.lower(CapturedMail.to_email).contains(to, autoescape=True))
    total = db().exec(select(func.count()).select_from(query.subquery())).one()
    if before:
        query = query.where(CapturedMail.id < before)
    mails = db().exec(query.order_by(CapturedMail.id.desc()).limit(PAGE + 1)).all()
    older = mails[PAGE - 1].id if len(mails) > PAGE else None
    counts = dict(
        db().exec(select(CapturedMail.kind, func.count()).group_by(CapturedMail.kind)).all()
    )
    return render_template(
        "outbox.html",
        mails=mails[:PAGE],
        total=total,
        kind=kind,
        to=to,
        before=before,
        older=older,
        kinds=[*KINDS, *sorted(k for k in counts if k not in KINDS)],
        counts=counts,
    )


@bp.post("/outbox/clear")
def outbox_clear():
    db().execute(delete(CapturedMail))
    db().commit()
    return redirect(url_for("dev.outbox_list"))


@bp.get("/outbox/<int:mail_id>")
def outbox_show(mail_id: int):
    mail = _mail(mail_id)
    newer = db().exec(select(func.min(CapturedMail.id)).where(CapturedMail.id > mail_id)).one()
    older = db().exec(select(func.max(CapturedMail.id)).where(CapturedMail.id < mail_id)).one()
    return render_template(
        "outbox_show.html",
        mail=mail,
        view=read(mail.raw),
        phone=request.args.get("width") == "phone",
        sandbox=IFRAME_SANDBOX,
        newer=newer,
        older=older,
    )


@bp.get("/outbox/<int:mail_id>/html")
def outbox_html(mail_id: int):
    html = read(_mail(mail_id).raw).html
    if html is None:
        abort(404)
    return Response(
        framed_html(html),
        mimetype="text/html",
        headers={"Content-Security-Policy": FRAME_POLICY, "X-Frame-Options": "SAMEORIGIN"},
    )


@bp.get("/outbox/<int:mail_id>.eml")
def outbox_raw(mail_id: int):
    return attachment(_mail(mail_id).raw, "message/rfc822", f"nudger-{mail_id}.eml")


@bp.get("/outbox/<int:mail_id>.ics")
@bp.get("/outbox/<int:mail_id>/<int:number>.ics")
def outbox_ics(mail_id: int, number: int = 1):
    invites = read(_mail(mail_id).raw).attachments
    if not 1 <= number <= len(invites):
        abort(404)
    suffix = "" if number == 1 else f"-{number}"
    return attachment(invites[number - 1].ics, "text/calendar", f"nudger-{mail_id}{suffix}.ics")


def _mail(mail_id: int) -> CapturedMail:
    mail = db().get(CapturedMail, mail_id)
    if mail is None:
        abort(404)
    return mail
