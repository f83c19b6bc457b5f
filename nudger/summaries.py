"""What a tick and a worker did, in words, for the command line."""

from __future__ import annotations

from datetime import datetime

from nudger import wording


def plural(count: int, one: str, many: str | None = None) -> str:
    """Return '1 email', '2 emails'."""
    return f"{count} {one if count == 1 else (many or one + 's')}"


#: what the tick counts that is not a kind of email
TICK_TALLIES = {
    "enrolments",
    "steps",
    "escalations",
    "enqueued",
    "reenqueued",
    "requeued",
    "inbound_requeued",
    "webhooks",
    "pruned",
    "checkins_planned",
    "checkin_reminders",
    "checkins_skipped",
    "checkins_no_manager",
}


def describe_tick(now: datetime, counts: dict[str, int], enqueued: bool) -> str:
    """Say in words what a tick did: new emails by kind, and what went to the queue."""
    when = f"Tick at {now:%Y-%m-%d %H:%M} UTC"
    kinds = {k: v for k, v in counts.items() if k not in TICK_TALLIES and v}
    new = sum(kinds.values())
    parts = []
    for kind, count in sorted(kinds.items(), key=lambda kv: (kv[0] != "step", kv[0])):
        words = plural(count, f"{kind} email")
        if kind == "step":
            words += f" ({plural(counts.get('steps', 0), 'step')})"
        parts.append(words)
    enrolments = plural(counts.get("enrolments", 0), "enrolment")
    if new:
        what = f"{plural(new, 'new email')} to send for {enrolments} due: {', '.join(parts)}"
    else:
        what = f"no new email ({enrolments} due)"
    if counts.get("escalations"):
        what += f"; {plural(counts['escalations'], 'overdue step')} escalated to managers"
    if counts.get("webhooks"):
        what += "; " + wording.count(
            counts["webhooks"],
            "%(num)d webhook or xAPI delivery to make",
            "%(num)d webhook or xAPI deliveries to make",
        )
    again, taken_back = counts.get("reenqueued", 0), counts.get("requeued", 0)
    stopped = f"{plural(taken_back, 'email')} taken back from a worker that stopped sending"
    if not enqueued:
        queued = "Nothing queued (--no-enqueue)" + (f"; {stopped}" if taken_back else "")
    elif new or again:
        queued = f"Queued for sending: {new} new, {again} again"
        if again:
            queued += " (earlier emails left without a job"
            queued += f", {stopped})" if taken_back else ")"
    else:
        queued = "Nothing to queue"
    if counts.get("inbound_requeued"):
        # Received mail whose job was lost (nudger.inbound): read now.
        queued += f"; {plural(counts['inbound_requeued'], 'received message')} queued to be read"
    return f"{when}: {what}.\n{queued}."


#: how a send job's outcomes read, in this order
SEND_OUTCOMES = {
    "sent": "sent",
    "failed": "failed",
    "retrying": "to retry later",
    "deferred": "handed back (the mail server did not answer)",
    "cancelled": "cancelled (nothing left to send)",
    "suppressed": "not sent (the address is undeliverable)",
    "lost": "left to another worker",
    "skipped": "already dealt with",
}


def describe_sending(emails: dict[str, int]) -> str:
    """Say what send jobs did: emails sent and failed, then any other outcome."""
    counts = {"sent": 0, "failed": 0, **emails}
    return "emails: " + ", ".join(
        f"{counts[key]} {words}"
        for key, words in SEND_OUTCOMES.items()
        if key in ("sent", "failed") or counts.get(key)
    )
