"""The escalation service: incidents from INCIDENTS delivered to the endpoints that asked for them,
as signed webhooks, retried, dead-lettered, redeliverable."""
