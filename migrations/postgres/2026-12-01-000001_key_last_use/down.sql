DROP TRIGGER user_keys_last_use ON user_keys;
DROP FUNCTION user_keys_add_last_use();
ALTER TABLE user_keys ADD COLUMN last_used_at TIMESTAMP, ADD COLUMN last_used_ip TEXT, ADD COLUMN last_used_ip_hex TEXT;
UPDATE user_keys k SET last_used_at = l.last_used_at, last_used_ip = l.last_used_ip, last_used_ip_hex = l.last_used_ip_hex
FROM key_last_use l WHERE l.key_id = k.id;
DROP TABLE key_last_use;
CREATE INDEX user_keys_last_ip ON user_keys (last_used_ip_hex);
CREATE INDEX user_keys_last_used_order ON user_keys (last_used_at DESC NULLS LAST, id DESC);
