-- A CAP delivery's own alert as later alerts name it ("sender,identifier,sent"): the Update and
-- Cancel sent to the same endpoint about the same incident list the earlier ones in `references`.
ALTER TABLE escalation_deliveries ADD COLUMN cap_reference text;
