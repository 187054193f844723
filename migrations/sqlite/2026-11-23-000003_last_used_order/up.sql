-- The admin's default sort (last use, newest first, ties by id) read straight off an index.
CREATE INDEX user_keys_last_used_order ON user_keys (last_used_at, id);
