"""Personal data has an end.

`erasure` removes a person's personal data on request (`erase_person`) and keeps
their anonymous progress in the counts; `retention` prunes stored copies of
sent mail after NUDGER_RETAIN_MAIL_DAYS, from the tick at most once an hour.
"""
