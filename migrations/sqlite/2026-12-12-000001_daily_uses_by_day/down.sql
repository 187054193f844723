CREATE TABLE key_daily_uses_by_key (
    key_id BIGINT NOT NULL,
    day BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key_id, day)
);
INSERT INTO key_daily_uses_by_key (key_id, day, hits) SELECT key_id, day, hits FROM key_daily_uses;
DROP TABLE key_daily_uses;
ALTER TABLE key_daily_uses_by_key RENAME TO key_daily_uses;
CREATE INDEX key_daily_uses_day ON key_daily_uses (day);
