-- `near`: nearest first through an index instead of a distance computed for every incident.
-- Each position is also kept as a point on the unit sphere (x, y, z) in a `cube`, indexed by
-- GiST with the tenant (btree_gist) so that `ORDER BY earth <-> centre` walks the index in
-- distance order (k-nearest neighbours) and stops after a page. The straight-line (chord)
-- distance between two points of the sphere rises with the great-circle distance, so it sorts
-- them the same; the API turns it into metres. cube and btree_gist are contrib extensions that
-- a database owner may create (trusted): no PostGIS, no superuser.
CREATE EXTENSION IF NOT EXISTS cube;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- NULL where the position is unknown (a flood, a site-wide fault): cube() refuses NULLs.
ALTER TABLE incidents ADD COLUMN earth cube GENERATED ALWAYS AS (
    CASE WHEN lat IS NOT NULL AND lon IS NOT NULL THEN
        cube(ARRAY[cos(radians(lat)) * cos(radians(lon)),
                   cos(radians(lat)) * sin(radians(lon)),
                   sin(radians(lat))])
    END
) STORED;
CREATE INDEX incidents_near ON incidents USING gist (tenant, earth) WHERE earth IS NOT NULL;
