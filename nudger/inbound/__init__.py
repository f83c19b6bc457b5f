"""Mail that comes back: replies that complete steps, bounces that stop sending.

`receiving` stores each message before it is acknowledged (`server` is the
SMTP face, the web's POST /inbound the HTTP one); `processing` acts on it
once, by Message-ID, from a job; `reading` says what a message is and what
its words ask for; `bounces` reads delivery failures and keeps the
undeliverable addresses.
"""
