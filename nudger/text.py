"""Which characters a person's text may hold: the one rule for journey files and CSV cells."""

import re

# C0, DEL and C1: invisible in an editor or a spreadsheet, refused by PostgreSQL (NUL),
# able to rewrite a terminal (ESC) or to split an email header (CR, LF).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_character(value: str, allowed: str = "\t") -> str | None:
    """Return the first control character in value not in allowed, spelt like U+0007, or None."""
    for found in CONTROL.finditer(value):
        if found[0] not in allowed:
            return f"U+{ord(found[0]):04X}"
    return None


def escape_controls(value: str) -> str:
    """Spell control characters as \\xNN, so showing a value cannot act on a terminal."""
    return CONTROL.sub(lambda found: f"\\x{ord(found[0]):02x}", value)
