-- A key's last use lives in a narrow table of its own, written often: moving it rewrites a
-- short row and its three index entries rather than the key row and its ten.
CREATE TABLE key_last_use (
    key_id INTEGER PRIMARY KEY NOT NULL REFERENCES user_keys(id) ON DELETE CASCADE,
    last_used_at TIMESTAMP,
    last_used_ip TEXT,
    -- The address as 32 hex digits of its IPv6 (or IPv4-mapped) form: a CIDR filter is a range.
    last_used_ip_hex TEXT
);
INSERT INTO key_last_use (key_id, last_used_at, last_used_ip, last_used_ip_hex)
SELECT id, last_used_at, last_used_ip, last_used_ip_hex FROM user_keys;
DROP INDEX user_keys_last_used_order;
DROP INDEX user_keys_last_ip;
ALTER TABLE user_keys DROP COLUMN last_used_at;
ALTER TABLE user_keys DROP COLUMN last_used_ip;
ALTER TABLE user_keys DROP COLUMN last_used_ip_hex;
-- The admin's default sort (last use, newest first, ties by key) read straight off an index.
CREATE INDEX key_last_use_order ON key_last_use (last_used_at, key_id);
CREATE INDEX key_last_use_ip ON key_last_use (last_used_ip_hex);
-- Every key has its row from the moment it exists, whoever inserts it.
CREATE TRIGGER user_keys_last_use AFTER INSERT ON user_keys
BEGIN
    INSERT INTO key_last_use (key_id) VALUES (NEW.id);
END;
