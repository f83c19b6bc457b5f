"""What an inbound message is and what its words ask for; nothing here writes."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

from mailparser_reply import EmailReplyParser

# The reply parser finds the quoted original by the headers mail clients write
# above it ("On ... wrote:", "Am ... schrieb", "Le ... a écrit", "El ... escribió").
REPLY_LANGUAGES = ["en", "de", "fr", "es"]

# Words that say a step is done, lower-case, accents kept and dropped alike.
DONE_WORDS = (
    # English
    "done", "did it", "completed", "complete", "finished", "✓", "✔", "☑", "✅",
    # French
    "fait", "c'est fait", "terminé", "fini",
    # German
    "erledigt", "gemacht", "fertig", "abgeschlossen",
    # Spanish
    "hecho", "hecha", "listo", "lista", "completado", "terminado",
    # Portuguese
    "feito", "feita", "concluído", "concluido", "pronto",
)  # fmt: skip
# A manager's word that confirms a step waiting for them.
CONFIRM_WORDS = (
    "confirm", "confirmed", "yes", "ok", "okay", "approved",
    "oui", "confirmé", "ja", "bestätigt", "sí", "si", "confirmado", "sim",
)  # fmt: skip

# Auto-replies: RFC 3834 and the headers mail systems use instead of it.
_AUTO_PRECEDENCE = {"bulk", "junk", "auto_reply"}
# Out-of-office subjects, in the languages learners write in.
_OUT_OF_OFFICE = re.compile(
    r"out of (the )?office|automatic reply|auto[- ]?reply|autoreply|away from (the )?office|"
    r"on (annual )?leave|abwesenheit|abwesend|automatische antwort|nicht im büro|"
    r"absence|absent|réponse automatique|fuera de la oficina|respuesta automática|ausente|"
    r"resposta automática|fora do escritório|ausência",
    re.IGNORECASE,
)
_AUTH_FAILED = re.compile(r"\b(dkim|spf|dmarc)\s*=\s*(fail|permerror)\b", re.IGNORECASE)
_SEPARATORS = " \t\r\n,.;:!-\u2013\u2014()"  # and the en and em dashes


def is_auto_reply(msg: EmailMessage) -> bool:
    """Say whether a message was sent by a machine on someone's behalf (RFC 3834 and kin)."""
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if msg.get("X-Autoreply") is not None or msg.get("X-Autorespond") is not None:
        return True
    if str(msg.get("Precedence", "")).strip().lower() in _AUTO_PRECEDENCE:
        return True
    return bool(_OUT_OF_OFFICE.search(str(msg.get("Subject", ""))))


def authentication_failed(msg: EmailMessage) -> bool:
    """Say whether the receiving server recorded a failed DKIM, SPF or DMARC check."""
    return any(_AUTH_FAILED.search(str(v)) for v in msg.get_all("Authentication-Results", []))


def sender(msg: EmailMessage) -> str:
    """Return the From address, lower-case ("" when there is none)."""
    found = getaddresses([str(v) for v in msg.get_all("From", [])])
    return found[0][1].strip().lower() if found else ""


def body_text(msg: EmailMessage) -> str:
    """Return the message's plain text (the HTML's text when it has none)."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True) or b""
        text = payload.decode("utf-8", "replace")
    if part.get_content_subtype() == "html":
        text = re.sub(r"<(br|/p|/div)[^>]*>", "\n", text, flags=re.IGNORECASE)
        text = re.sub(r"<[^>]+>", "", text)
    return text


def reply_text(msg: EmailMessage) -> str:
    """Return what the person wrote above the quoted original."""
    text = body_text(msg).replace("\r\n", "\n")
    latest = EmailReplyParser(languages=REPLY_LANGUAGES).parse_reply(text)
    return (latest or "").strip()


@dataclass(frozen=True)
class Command:
    """What a reply's first words ask for: `which` is the 1-based step named, if any."""

    word: str  # "done", "confirm", or "" for none
    which: int | None
    rest: str


def read_command(text: str) -> Command:
    """Read "done", "done 2, went well" or "confirm" at the start of a reply."""
    folded = unicodedata.normalize("NFC", text).strip()
    low = folded.lower()
    for word, words in (("done", DONE_WORDS), ("confirm", CONFIRM_WORDS)):
        for candidate in sorted(words, key=len, reverse=True):
            if not low.startswith(candidate):
                continue
            after = folded[len(candidate) :]
            if after and candidate[-1].isalnum() and (after[0].isalnum() or after[0] == "'"):
                continue  # "done" is not "doneness", "ok" is not "okapi"
            rest = after.lstrip(" \t")
            number = re.match(r"(\d{1,2})(?!\d|[:./]\d)", rest)
            which = None
            if number:
                which = int(number.group(1))
                rest = rest[number.end() :]
            return Command(word, which, rest.strip(_SEPARATORS))
    return Command("", None, folded)


def read_ratings(text: str, behaviours: int) -> list[int] | None:
    """Read one digit 1-5 per behaviour ("4 3 5", "4,3,5" or "435"); None if it is not that."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    digits = re.sub(r"[\s,;/]", "", first)
    if not digits or len(digits) != behaviours or not re.fullmatch(r"[1-5]+", digits):
        return None
    return [int(d) for d in digits]
