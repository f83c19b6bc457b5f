"""Emails as people receive them: templates, MIME, calendar invites, previews.

`render` fills templates (`render_once` renders a cohort's email once and
fills in each person), `mime` assembles messages, `invites` builds iCalendar
(RFC 5545/5546), `context` is the template view shared by `compose` (one
composer per outbox kind) and `previews`; `view` reads captured mail back for
the development outbox. Nothing here writes to the database.
"""
