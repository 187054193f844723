-- Uses of each key per day (days since 1970-01-01, UTC), added in the same transaction as
-- key_usage, for the 30-day picture on a key's page. Days older than 60 are pruned as it goes.
CREATE TABLE key_daily_uses (
    key_id BIGINT NOT NULL,
    day BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key_id, day)
);
CREATE INDEX key_daily_uses_day ON key_daily_uses (day);
