"""GET /outbox: mail captured by the `outbox:` transport (development only)."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

from flask import Blueprint, Response, abort, render_template
from sqlmodel import select

from nudger.models import CapturedMail
from nudger.web import db

bp = Blueprint("dev", __name__)

# The email's HTML runs in a sandbox: no scripts, no same-origin access, but a
# click on a link (the "Mark as done" button) may open it, as in a mail client.
FRAME_POLICY = (
    "sandbox allow-popups allow-popups-to-escape-sandbox "
    "allow-top-navigation-by-user-activation; "
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
)


def _parts(raw: bytes) -> dict:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    parts = {"headers": list(msg.items()), "text": None, "html": None, "ics": None}
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "text/plain" and parts["text"] is None:
            parts["text"] = part.get_content()
        elif ctype == "text/html" and parts["html"] is None:
            parts["html"] = part.get_content()
        elif ctype in ("text/calendar", "application/ics") and parts["ics"] is None:
            payload = part.get_payload(decode=True)
            parts["ics"] = payload.decode("utf-8", "replace") if payload else None
    return parts


@bp.get("/outbox")
def outbox_list():
    mails = db().exec(select(CapturedMail).order_by(CapturedMail.id.desc()).limit(500)).all()
    return render_template("outbox.html", mails=mails)


@bp.get("/outbox/<int:mail_id>")
def outbox_show(mail_id: int):
    mail = db().get(CapturedMail, mail_id) or abort(404)
    return render_template("outbox_show.html", mail=mail, parts=_parts(mail.raw))


@bp.get("/outbox/<int:mail_id>/html")
def outbox_html(mail_id: int):
    mail = db().get(CapturedMail, mail_id) or abort(404)
    html = _parts(mail.raw)["html"] or ""
    # Served to a sandboxed frame: no scripts, no same-origin access.
    return Response(html, headers={"Content-Security-Policy": FRAME_POLICY})


@bp.get("/outbox/<int:mail_id>.eml")
def outbox_raw(mail_id: int):
    mail = db().get(CapturedMail, mail_id) or abort(404)
    return Response(
        mail.raw,
        mimetype="message/rfc822",
        headers={"Content-Disposition": f"attachment; filename=nudger-{mail_id}.eml"},
    )


@bp.get("/outbox/<int:mail_id>.ics")
def outbox_ics(mail_id: int):
    mail = db().get(CapturedMail, mail_id) or abort(404)
    ics = _parts(mail.raw)["ics"] or abort(404)
    return Response(
        ics,
        mimetype="text/calendar",
        headers={"Content-Disposition": f"attachment; filename=nudger-{mail_id}.ics"},
    )
