"""Changes to live enrolments and what follows from them for each learner.

`changes` pauses, resumes, withdraws and moves enrolments; `preferences` holds
what a person chose (muted reminders, digest frequency); `invite_changes` writes the
calendar updates and cancels a change calls for; `journey_edits` applies an
edited journey file to the people on it (`edit_effects` decides per learner,
`edit_summary` is what `nudger journeys sync` prints).
"""
