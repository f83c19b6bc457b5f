"""Measuring a journey's goal: check-ins that ask learners and managers how often
each observable behaviour happens, at the start (the status quo), the end and after.

`checkpoints` says when each checkpoint falls; `planning` writes an enrolment's
check-ins ahead; `due` decides which go out at a tick and which are reminded;
`answers` reads and records answers from the signed check-in page; `results`
sums ratings for the CLI, the report and the admin panel; `edits` says what a
journey edit does to measurement.
"""
