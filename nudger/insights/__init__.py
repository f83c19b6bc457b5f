"""What admins, managers and learners read: progress, search, dashboards, the mail ledger.

Read-only but for the ledger's retry: nothing here decides what is sent.
"""
