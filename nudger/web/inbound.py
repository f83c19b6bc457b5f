"""POST /inbound: raw RFC 5322 mail from a provider's inbound route, with a shared secret.

The secret comes as a bearer token or as the password of HTTP basic auth
(most providers let the route's URL carry `user:secret@`). The body is the
raw message (any content type), or a form with the raw message in `email`
(SendGrid's raw mode) or `body-mime` (Mailgun's MIME route).
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, abort, jsonify, request
from redis.exceptions import RedisError

from nudger.db import utcnow
from nudger.inbound.receiving import enqueue, parse, recipient_of, store
from nudger.web import csrf, db, settings

bp = Blueprint("inbound", __name__)
log = logging.getLogger(__name__)

_RAW_FIELDS = ("email", "body-mime", "message")
_RECIPIENT_FIELDS = ("to", "recipient", "envelope_to")


def _authorised(secret: str) -> bool:
    given = ""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        given = header[7:].strip()
    elif request.authorization is not None:
        given = request.authorization.password or ""
    return bool(given) and hmac.compare_digest(given.encode(), secret.encode())


@csrf.exempt
@bp.post("/inbound")
def receive():
    config = settings()
    if not (config.inbound_secret and config.inbound_domain):
        abort(404)
    if not _authorised(config.inbound_secret):
        return jsonify(error="a valid NUDGER_INBOUND_SECRET is required"), 401
    if request.content_length and request.content_length > config.inbound_max_bytes:
        return jsonify(error=f"the message is over {config.inbound_max_bytes} bytes"), 413
    # Read (and keep) the body before the form: a raw message posted with the form type
    # (curl -d's default, and some relays') would otherwise be consumed by form parsing
    # and read back as empty. Werkzeug parses the form from the kept copy.
    body = request.get_data()
    form = (
        request.form
        if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded")
        else {}
    )
    raw_text = next((form[f] for f in _RAW_FIELDS if form.get(f)), None)
    raw = raw_text.encode("utf-8", "surrogateescape") if raw_text else body
    if not raw.strip():
        return jsonify(error="no message: send the raw RFC 5322 message as the body"), 400
    if len(raw) > config.inbound_max_bytes:
        return jsonify(error=f"the message is over {config.inbound_max_bytes} bytes"), 413
    given = next((form[f] for f in _RECIPIENT_FIELDS if form.get(f)), request.args.get("to", ""))
    recipient = recipient_of(config, parse(raw), given)
    if recipient is None:
        # As the SMTP server's 550: a provider that forwards everything hears it once.
        return jsonify(error=f"not addressed to a mailbox of {config.inbound_domain}"), 422
    inbound_id, new = store(
        db(),
        raw,
        recipient=recipient,
        envelope_from=request.args.get("from", ""),
        via="http",
        now=utcnow(),
    )
    if new:
        try:
            enqueue(config, inbound_id)
        except RedisError:  # stored: the tick queues it again
            log.warning("could not queue inbound message %s", inbound_id, exc_info=True)
    return jsonify(id=inbound_id, new=new), 202 if new else 200
