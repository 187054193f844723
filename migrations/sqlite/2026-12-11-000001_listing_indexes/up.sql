-- Indexes the planner cannot misread. SQLite's statistics are sampled (`PRAGMA optimize`, the
-- seed's ANALYZE) and know nothing of skew: on a site of 1,000,000 keys they said a key type
-- matches 251 keys and "revoked_at IS NULL" about 1,000, and the planner read nearly every key
-- and sorted them: 300 ms for the admin's first page, 65 ms for one type of a user's keys.
--
-- Only revoked keys in the index of revocation times (nearly every key is unrevoked); listing
-- revoked keys still uses it.
DROP INDEX user_keys_revoked;
CREATE INDEX user_keys_revoked ON user_keys (revoked_at) WHERE revoked_at IS NOT NULL;
-- A user's keys of one type in the order their page lists them, newest first, so its first
-- rows are read in order and no more.
DROP INDEX user_keys_user_type;
CREATE INDEX user_keys_user_type ON user_keys (user_id, key_type, created_at, id);
