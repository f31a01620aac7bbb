-- Whoever holds a signed one-time acknowledgement link sent in a notification is an actor too:
-- the link is their only credential, so the trail names the link (its endpoint), not a person.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_actor_kind_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_actor_kind_check
    CHECK (actor_kind IN ('person', 'key', 'command', 'service', 'link'));
