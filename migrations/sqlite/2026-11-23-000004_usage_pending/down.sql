CREATE INDEX user_keys_last_used ON user_keys (last_used_at);
DROP TABLE key_usage_pending;
ALTER TABLE key_usage RENAME TO key_usage_v2;
CREATE TABLE key_usage (
    key_id BIGINT NOT NULL REFERENCES user_keys(id) ON DELETE CASCADE,
    user_agent TEXT NOT NULL,
    ip TEXT NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key_id, user_agent, ip)
) WITHOUT ROWID;
INSERT INTO key_usage (key_id, user_agent, ip, first_seen, last_seen, hits)
SELECT u.key_id, a.agent, u.ip, u.first_seen, u.last_seen, u.hits
FROM key_usage_v2 u JOIN user_agents a ON a.id = u.agent_id;
DROP TABLE key_usage_v2;
DROP TABLE user_agents;
