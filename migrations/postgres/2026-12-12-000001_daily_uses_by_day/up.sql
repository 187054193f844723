-- Days first: a fold adds to today's count of nearly every key it folds, and ordered by day
-- those index entries share pages rather than each sitting among its key's earlier days. The
-- primary key's leading column serves the pruning of old days, so the day index goes.
ALTER TABLE key_daily_uses DROP CONSTRAINT key_daily_uses_pkey;
ALTER TABLE key_daily_uses ADD PRIMARY KEY (day, key_id);
DROP INDEX key_daily_uses_day;
