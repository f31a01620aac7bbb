-- A service acting on its own (the city feed exporting what a policy allows) is an actor too.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_actor_kind_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_actor_kind_check
    CHECK (actor_kind IN ('person', 'key', 'command', 'service'));
