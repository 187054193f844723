-- The admin's default sort (last use, newest first, never-used last) read straight off an index.
CREATE INDEX user_keys_last_used_order ON user_keys (last_used_at DESC NULLS LAST, id DESC);
