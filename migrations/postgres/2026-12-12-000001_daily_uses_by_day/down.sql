ALTER TABLE key_daily_uses DROP CONSTRAINT key_daily_uses_pkey;
ALTER TABLE key_daily_uses ADD PRIMARY KEY (key_id, day);
CREATE INDEX key_daily_uses_day ON key_daily_uses (day);
