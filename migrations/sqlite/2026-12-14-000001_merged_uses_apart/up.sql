-- A merged piece's packed uses in a table of their own. A sweep step that folds part of a piece
-- moves its first_key up; in one row with the uses, SQLite read and wrote the whole record
-- again for that (720 KB for a piece of 10,000 uses), and the log and the checkpoint copied it.
CREATE TABLE key_usage_merged_uses (
    piece_id INTEGER PRIMARY KEY,
    uses BLOB NOT NULL
);
INSERT INTO key_usage_merged_uses (piece_id, uses) SELECT id, uses FROM key_usage_merged;
ALTER TABLE key_usage_merged DROP COLUMN uses;
