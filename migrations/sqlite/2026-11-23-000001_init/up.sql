-- Times are UTC, written by the application (no database-side defaults), so both backends agree.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    fullname TEXT NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    suspended BOOLEAN NOT NULL DEFAULT 0,
    is_site_admin BOOLEAN NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE services (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    shortname TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    enabled BOOLEAN NOT NULL,
    download_files BOOLEAN NOT NULL DEFAULT 0,
    upload_files BOOLEAN NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE service_functions (
    service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    function_name TEXT NOT NULL,
    PRIMARY KEY (service_id, function_name)
);

-- Site-wide switch per key type; a type without a row uses the registry's default.
CREATE TABLE key_type_settings (
    key_type TEXT PRIMARY KEY NOT NULL,
    enabled BOOLEAN NOT NULL
);

-- Every key of every type: one model. Secrets only as SHA-256 hex.
CREATE TABLE user_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users(id),
    key_type TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_hash TEXT UNIQUE,
    private_hash TEXT,
    service_id BIGINT REFERENCES services(id),
    device_id TEXT,
    details TEXT,
    created_at TIMESTAMP NOT NULL,
    created_by BIGINT REFERENCES users(id),
    ip_restriction TEXT,
    valid_until TIMESTAMP,
    last_used_at TIMESTAMP,
    last_used_ip TEXT,
    revoked_at TIMESTAMP,
    revoked_by BIGINT REFERENCES users(id),
    revoked_reason TEXT
);
CREATE INDEX user_keys_user_type ON user_keys (user_id, key_type);
CREATE INDEX user_keys_user_device ON user_keys (user_id, device_id);
CREATE INDEX user_keys_last_used ON user_keys (last_used_at);
CREATE INDEX user_keys_created ON user_keys (created_at);
CREATE INDEX user_keys_type_created ON user_keys (key_type, created_at);

-- Use of a key, apart from the key row, so it can be summarised per agent without touching keys.
-- WITHOUT ROWID: the primary key is the only index, so each use written is one B-tree update.
CREATE TABLE key_usage (
    key_id BIGINT NOT NULL REFERENCES user_keys(id) ON DELETE CASCADE,
    user_agent TEXT NOT NULL,
    ip TEXT NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    hits BIGINT NOT NULL,
    PRIMARY KEY (key_id, user_agent, ip)
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TIMESTAMP NOT NULL,
    action TEXT NOT NULL,
    actor_id BIGINT,
    target_user_id BIGINT,
    key_id BIGINT,
    key_type TEXT,
    ip TEXT,
    reason TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_target ON audit_log (target_user_id, at);
