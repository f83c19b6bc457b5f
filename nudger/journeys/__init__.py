"""Journeys as written: the model of a journey file (`spec`) and reading files (`loading`)."""
