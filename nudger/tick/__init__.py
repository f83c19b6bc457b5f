"""The tick: at `now`, decide every message that is due and write it to the outbox.

`run` holds `tick(now)` and the step emails; `state` what one tick carries
between its phases; `followups` reminders, escalations and confirmation
requests; `digests` the managers' escalation digests.
"""
