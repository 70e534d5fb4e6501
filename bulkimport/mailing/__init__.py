"""Invitations: generating passwords, rendering the e-mail in a sandbox, sending it over SMTP
through RQ workers (or in-process threads), throttled and tracked in the database."""
