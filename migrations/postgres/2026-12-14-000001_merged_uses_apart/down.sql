ALTER TABLE key_usage_merged ADD COLUMN uses BYTEA NOT NULL DEFAULT '';
ALTER TABLE key_usage_merged ALTER COLUMN uses SET STORAGE EXTERNAL;
UPDATE key_usage_merged m SET uses = u.uses FROM key_usage_merged_uses u WHERE u.piece_id = m.id;
DROP TABLE key_usage_merged_uses;
