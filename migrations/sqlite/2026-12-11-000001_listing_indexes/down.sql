DROP INDEX user_keys_user_type;
CREATE INDEX user_keys_user_type ON user_keys (user_id, key_type);
DROP INDEX user_keys_revoked;
CREATE INDEX user_keys_revoked ON user_keys (revoked_at);
