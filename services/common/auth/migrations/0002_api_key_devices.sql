-- Keys of single devices: a detector that posts for itself may post for nothing else.
ALTER TABLE api_keys ADD COLUMN devices text[];  -- NULL: every device of the key's sites
