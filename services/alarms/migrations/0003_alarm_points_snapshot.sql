-- The picture of the detection that last raised the alarm (the observation's snapshot reference,
-- e.g. '/v1/snapshots/<ULID>'), shown with the alarm; '' when none. The engine keeps the same in
-- engine_state; a row written before reads as none until its next write.
ALTER TABLE alarm_points ADD COLUMN snapshot text NOT NULL DEFAULT '';
