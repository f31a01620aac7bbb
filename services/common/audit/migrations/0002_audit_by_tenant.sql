-- GET /v1/audit reads one tenant's rows newest first (by id), a page at a time.
CREATE INDEX audit_log_tenant_id ON audit_log (tenant, id);
