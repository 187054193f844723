-- A merged piece's packed uses in a table of their own, as on SQLite (where moving a piece's
-- first_key up rewrote its uses): one schema for both.
CREATE TABLE key_usage_merged_uses (
    piece_id BIGINT PRIMARY KEY,
    uses BYTEA NOT NULL
);
-- Packed uses do not compress (see key_usage_pending).
ALTER TABLE key_usage_merged_uses ALTER COLUMN uses SET STORAGE EXTERNAL;
INSERT INTO key_usage_merged_uses (piece_id, uses) SELECT id, uses FROM key_usage_merged;
ALTER TABLE key_usage_merged DROP COLUMN uses;
