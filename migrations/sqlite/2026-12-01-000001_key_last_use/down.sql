DROP TRIGGER user_keys_last_use;
ALTER TABLE user_keys ADD COLUMN last_used_at TIMESTAMP;
ALTER TABLE user_keys ADD COLUMN last_used_ip TEXT;
ALTER TABLE user_keys ADD COLUMN last_used_ip_hex TEXT;
UPDATE user_keys SET
    last_used_at = (SELECT l.last_used_at FROM key_last_use l WHERE l.key_id = user_keys.id),
    last_used_ip = (SELECT l.last_used_ip FROM key_last_use l WHERE l.key_id = user_keys.id),
    last_used_ip_hex = (SELECT l.last_used_ip_hex FROM key_last_use l WHERE l.key_id = user_keys.id);
DROP TABLE key_last_use;
CREATE INDEX user_keys_last_used_order ON user_keys (last_used_at, id);
CREATE INDEX user_keys_last_ip ON user_keys (last_used_ip_hex);
