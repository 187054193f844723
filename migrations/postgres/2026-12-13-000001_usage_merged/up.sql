-- The pending log merged and sorted, waiting to be folded: each row a piece of one merge, its
-- uses in key order, of keys first_key to last_key. A fold sweeps the key space across all the
-- pieces at once, so a key used in many merges is upserted once per sweep rather than once
-- per merge; first_key moves up as a sweep folds part of a piece, so what a piece still holds
-- is always exactly what is not yet folded.
CREATE TABLE key_usage_merged (
    id BIGSERIAL PRIMARY KEY,
    first_key BIGINT NOT NULL,
    last_key BIGINT NOT NULL,
    use_count BIGINT NOT NULL,
    uses BYTEA NOT NULL
);
-- Packed uses do not compress (see key_usage_pending).
ALTER TABLE key_usage_merged ALTER COLUMN uses SET STORAGE EXTERNAL;
