"""The REST API's domain side: bearer tokens, what the API reads and writes, rate limits.

`access` (creating, listing, revoking and checking tokens), `schemas` (the
pydantic models of the API's requests and answers, from which the OpenAPI
document is generated), `reading` (journeys and enrolments as the API shows
them), `writing` (enrolling through the CSV import's checks, completing steps,
pausing, resuming, withdrawing) and `quotas` (requests per token per minute).
The Flask views are in `nudger.web.api`.
"""
