-- Each user agent is stored once; usage rows refer to it by number.
CREATE TABLE user_agents (
    id BIGSERIAL PRIMARY KEY,
    agent TEXT NOT NULL UNIQUE
);
INSERT INTO user_agents (agent) SELECT DISTINCT user_agent FROM key_usage;

ALTER TABLE key_usage RENAME TO key_usage_v1;
CREATE TABLE key_usage (
    key_id BIGINT NOT NULL REFERENCES user_keys(id) ON DELETE CASCADE,
    agent_id BIGINT NOT NULL REFERENCES user_agents(id),
    ip TEXT NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key_id, agent_id, ip)
);
INSERT INTO key_usage (key_id, agent_id, ip, first_seen, last_seen, hits)
SELECT u.key_id, a.id, u.ip, u.first_seen, u.last_seen, u.hits
FROM key_usage_v1 u JOIN user_agents a ON a.agent = u.user_agent;
DROP TABLE key_usage_v1;

-- Uses land here first: each flush (four a second) appends one row holding its uses packed
-- (see src/db/usage.rs), a cheap sequential write whatever keys they belong to. They are
-- folded into key_usage in sorted batches, at once when the site is quiet and every few
-- seconds under load, so a crash loses almost nothing and the random-access upserts happen
-- once per batch rather than once per flush.
CREATE TABLE key_usage_pending (
    id BIGSERIAL PRIMARY KEY,
    use_count BIGINT NOT NULL,
    uses BYTEA NOT NULL
);

-- user_keys_last_used_order serves every query this one did.
DROP INDEX user_keys_last_used;

-- Packed uses do not compress; storing them as they are spares the server a compression pass
-- on every flush.
ALTER TABLE key_usage_pending ALTER COLUMN uses SET STORAGE EXTERNAL;
