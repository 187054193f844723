ALTER TABLE key_usage_merged ADD COLUMN uses BLOB NOT NULL DEFAULT x'';
UPDATE key_usage_merged SET uses = (SELECT u.uses FROM key_usage_merged_uses u WHERE u.piece_id = key_usage_merged.id);
DROP TABLE key_usage_merged_uses;
