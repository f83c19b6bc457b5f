"""The words for counts and lateness, in one place, ready for translation.

Every count a person reads goes through `ngettext` (Babel's plural rules,
English msgids), in emails, pages and the command line alike; and GLOSSARY
is the one definition of "overdue", "behind" and "escalated" that every
email and page uses, with the phrases below that say them.
"""

from __future__ import annotations

from babel.support import NullTranslations

_ENGLISH = NullTranslations()

# What the code computes (nudger.schedule, nudger.insights.timeline and
# dashboard): a step is overdue once its due date has passed undone; a learner
# is behind while any step is overdue, by their most overdue step; escalated
# once that passes the journey's first escalation threshold, when the digest
# tells someone.
GLOSSARY = (
    (
        "Overdue",
        "a step not done by its due time, counted in the learner's whole working days since "
        "its due date: less than a working day overdue, then 1 working day overdue, and so on.",
    ),
    (
        "Behind",
        "a learner with at least one overdue step, by as many working days as their most "
        "overdue step.",
    ),
    (
        "Escalated",
        "a learner behind by at least the journey's escalation threshold: their manager "
        "(or the next person up) has been told in their digest.",
    ),
)


def translations() -> NullTranslations:
    """Return the catalogue in use: Flask-Babel's in a Flask app, else the English msgids."""
    try:
        from flask import current_app, has_app_context
    except ImportError:  # pragma: no cover - Flask is a dependency
        return _ENGLISH
    if has_app_context() and "babel" in current_app.extensions:
        from flask_babel import get_translations

        return get_translations()
    return _ENGLISH


def gettext(message: str, **variables: object) -> str:
    """Translate a message and fill in its %(name)s variables."""
    text = translations().gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: object) -> str:
    """Pick the singular or plural form for `num` (the language's rules) and fill it in."""
    return translations().ngettext(singular, plural, num) % {"num": num, **variables}


def count(num: int, singular: str, plural: str) -> str:
    """Say "1 row" or "3 rows": `singular` and `plural` are msgids with %(num)d."""
    return ngettext(singular, plural, num)


def days_overdue(days: int) -> str:
    """Say how overdue a step is: "1 working day overdue", "3 working days overdue"."""
    if days <= 0:
        return gettext("less than a working day overdue")
    return ngettext("%(num)d working day overdue", "%(num)d working days overdue", days)


def behind_by(days: int) -> str:
    """Say how far behind a learner is: "behind by 2 working days"."""
    if days <= 0:
        return gettext("behind by less than a working day")
    return ngettext("behind by %(num)d working day", "behind by %(num)d working days", days)


def install(env) -> None:
    """Give a Jinja environment `_`, `gettext`, `ngettext` and the glossary phrases."""
    if "jinja2.ext.InternationalizationExtension" not in env.extensions:
        env.add_extension("jinja2.ext.i18n")
        # Jinja formats %(num)d itself (newstyle), so it gets the raw lookups.
        env.install_gettext_callables(
            lambda message: translations().gettext(message),
            lambda singular, plural, num: translations().ngettext(singular, plural, num),
            newstyle=True,
        )
    env.globals.update(days_overdue=days_overdue, behind_by=behind_by, glossary=GLOSSARY)
