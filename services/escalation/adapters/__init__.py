"""Escalation's adapters: PostgreSQL rows, the HTTP sender, renderings of incidents."""
