use super::schema::*;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub fullname: String,
    pub email: String,
    pub password_hash: String,
    pub suspended: bool,
    pub is_site_admin: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub fullname: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub suspended: bool,
    pub is_site_admin: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = services)]
pub struct Service {
    pub id: i64,
    pub shortname: String,
    pub name: String,
    pub enabled: bool,
    pub download_files: bool,
    pub upload_files: bool,
    pub created_at: NaiveDateTime,
}

/// A key of any type. `secret_hash` is absent for keys without a secret (push devices).
#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = user_keys)]
pub struct KeyRow {
    pub id: i64,
    pub user_id: i64,
    pub key_type: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub private_hash: Option<String>,
    pub service_id: Option<i64>,
    pub device_id: Option<String>,
    pub details: Option<String>,
    pub created_at: NaiveDateTime,
    pub created_by: Option<i64>,
    pub ip_restriction: Option<String>,
    pub valid_until: Option<NaiveDateTime>,
    // Kept beside the key, in key_last_use: every query of keys joins it.
    #[diesel(select_expression = super::schema::key_last_use::last_used_at)]
    pub last_used_at: Option<NaiveDateTime>,
    #[diesel(select_expression = super::schema::key_last_use::last_used_ip)]
    pub last_used_ip: Option<String>,
    pub revoked_at: Option<NaiveDateTime>,
    pub revoked_by: Option<i64>,
    pub revoked_reason: Option<String>,
    /// When the owner's client was first told the key had expired (tokens only).
    pub expiry_reported_at: Option<NaiveDateTime>,
    /// The functions a personal access token may call, space-separated; `None`: its service's.
    pub function_scope: Option<String>,
}

/// What checking a presented secret reads of its key, and no more: a token-cache miss is a few
/// indexed reads, and the key's last use (in a table of its own, a B-tree more to descend) is
/// not among them. At 10,000,000 keys that join was a seventh of a miss.
#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = user_keys)]
pub struct KeyCheckRow {
    pub id: i64,
    pub key_type: String,
    pub private_hash: Option<String>,
    pub service_id: Option<i64>,
    pub ip_restriction: Option<String>,
    pub valid_until: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub expiry_reported_at: Option<NaiveDateTime>,
    pub function_scope: Option<String>,
}

impl From<KeyRow> for KeyCheckRow {
    fn from(row: KeyRow) -> Self {
        KeyCheckRow {
            id: row.id,
            key_type: row.key_type,
            private_hash: row.private_hash,
            service_id: row.service_id,
            ip_restriction: row.ip_restriction,
            valid_until: row.valid_until,
            revoked_at: row.revoked_at,
            expiry_reported_at: row.expiry_reported_at,
            function_scope: row.function_scope,
        }
    }
}

#[derive(Insertable, Clone, Debug, Default)]
#[diesel(table_name = user_keys)]
pub struct NewKey {
    pub user_id: i64,
    pub key_type: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub private_hash: Option<String>,
    pub service_id: Option<i64>,
    pub device_id: Option<String>,
    pub details: Option<String>,
    pub created_at: NaiveDateTime,
    pub created_by: Option<i64>,
    pub ip_restriction: Option<String>,
    pub valid_until: Option<NaiveDateTime>,
    pub function_scope: Option<String>,
}

/// Use of a key by one agent, as a page reads it (the agent's text joined in): its latest use,
/// the address of that use, and how many uses in all.
#[derive(QueryableByName, Clone, Debug)]
pub struct UsageRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub key_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub user_agent: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub ip: String,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub last_seen: NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub hits: i64,
}

#[derive(Insertable, Clone, Debug, Default)]
#[diesel(table_name = audit_log)]
pub struct NewAuditEntry {
    pub at: NaiveDateTime,
    pub action: String,
    pub actor_id: Option<i64>,
    pub target_user_id: Option<i64>,
    pub key_id: Option<i64>,
    pub key_type: Option<String>,
    pub ip: Option<String>,
    pub reason: Option<String>,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub at: NaiveDateTime,
    pub action: String,
    pub actor_id: Option<i64>,
    pub target_user_id: Option<i64>,
    pub key_id: Option<i64>,
    pub key_type: Option<String>,
    pub ip: Option<String>,
    pub reason: Option<String>,
}
