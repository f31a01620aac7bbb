-- An observation's identity is (tenant, id, time), as on the stream and in ingest:
-- * the same client id in two tenants names two observations (one tenant's reading must never
--   stand in for, or be dropped as a duplicate of, another tenant's);
-- * within a tenant an id names one reading at one time: the same (tenant, id, time) again is a
--   retry or a redelivery and is dropped (the writer's ON CONFLICT DO NOTHING keeps the first),
--   the same id at another time is another row.
-- `time` must be in every unique key of a table partitioned by it. The query indexes
-- (site, time, id) and (site, device, kind, time, id) are unaffected. Rebuilding the key reads
-- every partition once and holds writers back meanwhile; the stream keeps what arrives.
ALTER TABLE observations DROP CONSTRAINT observations_pkey;
ALTER TABLE observations ADD PRIMARY KEY (tenant, id, time);
