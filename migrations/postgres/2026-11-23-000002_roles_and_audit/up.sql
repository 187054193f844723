-- Roles carry capabilities; users hold roles. Site admins have every capability.
CREATE TABLE roles (
    id BIGSERIAL PRIMARY KEY,
    shortname TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);
CREATE TABLE role_capabilities (
    role_id BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    capability TEXT NOT NULL,
    PRIMARY KEY (role_id, capability)
);
CREATE TABLE user_roles (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);

-- The last-use address as 32 hex digits of its IPv6 (or IPv4-mapped) form, so a CIDR filter is
-- an indexed range on both backends.
ALTER TABLE user_keys ADD COLUMN last_used_ip_hex TEXT;
CREATE INDEX user_keys_last_ip ON user_keys (last_used_ip_hex);
CREATE INDEX user_keys_service ON user_keys (service_id, created_at);
CREATE INDEX user_keys_revoked ON user_keys (revoked_at);
CREATE INDEX users_email ON users (email);
CREATE INDEX audit_log_action ON audit_log (action, at);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at);
