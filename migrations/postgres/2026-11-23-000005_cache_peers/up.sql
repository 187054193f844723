-- Keeping the token caches of several instances coherent (src/db/peers.rs). Every write that can
-- make a key invalid takes the next generation here (the row lock orders such writes) and
-- announces it with NOTIFY; each instance with a cache records the generation it has applied
-- and a heartbeat, and the writer answers only once every live instance has caught up.
CREATE TABLE cache_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO cache_generation (id, value) VALUES (1, 0);

CREATE TABLE cache_instances (
    id TEXT PRIMARY KEY,
    seen BIGINT NOT NULL,
    beat_at TIMESTAMPTZ NOT NULL
);
