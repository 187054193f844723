-- Days first, without a rowid: a fold adds to today's count of nearly every key it folds, and
-- with (key_id, day) those rows lay between each key's earlier days, one page apart, so every
-- row rewrote a page of its own (and a page of the day index). Ordered by day, today's rows
-- share pages, the table is the one B-tree, and days past keeping are a range at its front.
-- (bench/fold_pieces.py, 1,000,000 keys with ten earlier days each, pieces of 20,000 rows: the
-- fold's two upserts took 17.5 µs a row before, 15.0 after; 19.5 while each daily row looked
-- its key up again.) A key's 30 days are read as 30 seeks.
CREATE TABLE key_daily_uses_by_day (
    key_id BIGINT NOT NULL,
    day BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (day, key_id)
) WITHOUT ROWID;
INSERT INTO key_daily_uses_by_day (key_id, day, hits) SELECT key_id, day, hits FROM key_daily_uses;
DROP TABLE key_daily_uses;
ALTER TABLE key_daily_uses_by_day RENAME TO key_daily_uses;
