-- Most units of work rewrite a point's engine_state and little else. With room left on each page
-- such an update stays on the page and touches no index (a HOT update) whenever no indexed column
-- changed; at the default fill factor the page is full and every update moves the row.
ALTER TABLE alarm_points SET (fillfactor = 50);
