"""The `nudger` command.

Exit codes: 0 success, 1 input rejected (nothing written), 2 usage error.
The commands live by what they are for: `setup` (schema, journeys, learners,
admins), `processes` (tick, worker, clock, web, demo, inbound), `people`
(reports, ratings, enrolment changes, erasure), `tokens` (the REST API's
tokens) and `integrations` (webhooks);
`common` is what they share.
"""

from __future__ import annotations

import logging

import click

from nudger.cli import integrations, people, processes, setup, tokens
from nudger.cli.common import NudgerGroup


@click.group(cls=NudgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nudger", message="nudger %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
def main(verbose: bool) -> None:
    """Nudger: learning journeys delivered step by step, by email."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for command in (
    setup.init,
    setup.journeys,
    setup.import_,
    setup.create_admin,
    processes.tick,
    processes.worker,
    processes.clock,
    processes.web,
    processes.inbound,
    processes.demo,
    people.report,
    people.ratings,
    *people.ENROLMENT_COMMANDS,
    people.erase,
    people.prune,
    tokens.api_token,
    integrations.webhooks,
):
    main.add_command(command)
