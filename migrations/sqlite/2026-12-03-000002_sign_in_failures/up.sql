-- Failed sign-ins, for throttling: one row per password check that failed, reserved before the
-- check (so concurrent guesses count as they arrive) and removed if the password was right.
-- Keyed by the login name as typed (normalised), so unknown names are throttled like known ones.
CREATE TABLE sign_in_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    login TEXT NOT NULL,
    ip TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    -- False while the password is being checked; in-flight attempts count against the account,
    -- only checked ones against the whole address (many people may share one).
    checked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sign_in_failures_login ON sign_in_failures (login, at);
CREATE INDEX sign_in_failures_ip ON sign_in_failures (ip, at);
