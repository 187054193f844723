-- A key used by a client (a named agent) or from a network (a /24 or /48) it had never been used
-- by or from, found as usage is folded. Shown to the owner until dismissed ("It was me") or the
-- key is revoked; mailed by a background job, at most one mail per key an hour.
CREATE TABLE client_alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id BIGINT NOT NULL REFERENCES user_keys(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL,
    -- The client as the pages name it ("Nextcloud desktop 3.3 · Windows 10").
    agent TEXT NOT NULL,
    ip TEXT NOT NULL,
    -- Whether the client was new to the key (else only the network was).
    new_client BOOLEAN NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    dismissed_at TIMESTAMP,
    mailed_at TIMESTAMP,
    -- An instance sending the mail: others leave the alert alone until it is mailed or this is old.
    mail_claimed_at TIMESTAMP
);
CREATE INDEX client_alerts_user ON client_alerts (user_id, id) WHERE dismissed_at IS NULL;
CREATE INDEX client_alerts_key_mailed ON client_alerts (key_id, mailed_at);
CREATE INDEX client_alerts_unmailed ON client_alerts (id) WHERE mailed_at IS NULL AND dismissed_at IS NULL;
-- Keys never used, by type and age, for the job that revokes keys unused too long (keys used
-- before are found through key_last_use_order).
CREATE INDEX user_keys_unrevoked_type_created ON user_keys (key_type, created_at, id) WHERE revoked_at IS NULL;
