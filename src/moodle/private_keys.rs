//! Private keys (Moodle's user_private_key): RSS, calendar export, auto-login, QR login.
//! Validated as Moodle's validate_user_key: invalidkey, expiredkey, ipmismatch.

use super::error::MoodleError;
use crate::app::State;
use crate::db::models::{KeyRow, User};
use crate::domain::ip_restriction::stored_allows;
use crate::domain::secret::ClearSecret;
use crate::domain::time::now;
use crate::web::client::ClientInfo;

pub enum Consume {
    /// Single-use keys (auto-login, QR login) are revoked as they are accepted.
    Once,
    Keep,
}

/// The key and its owner if `value` is an active key of `key_type` usable from the caller's IP
/// (and owned by `expected_user` when given). Records the use.
pub async fn validate(
    state: &State,
    value: &str,
    key_type: &'static str,
    expected_user: Option<i64>,
    client: &ClientInfo,
    consume: Consume,
) -> Result<(KeyRow, User), MoodleError> {
    let value = value.trim();
    if value.is_empty() || value.len() > 128 {
        return Err(MoodleError::invalid_key());
    }
    let hash = ClearSecret::from_client(value).hash();
    let found = state.db.read(move |conn| crate::db::keys::find_by_secret_hash(conn, hash.as_str())).await?;
    let default_on = state.registry.on_by_default(key_type);
    let (key, user) =
        found.filter(|(k, _)| k.key_type == key_type && k.revoked_at.is_none()).ok_or_else(MoodleError::invalid_key)?;
    if expected_user.is_some_and(|u| u != key.user_id) {
        return Err(MoodleError::invalid_key());
    }
    if key.valid_until.is_some_and(|v| v <= now()) {
        return Err(MoodleError::expired_key());
    }
    if !stored_allows(key.ip_restriction.as_deref(), client.ip) {
        return Err(MoodleError::ip_mismatch());
    }
    let enabled = state.db.read(move |conn| crate::db::key_types::enabled(conn, key_type, default_on)).await?;
    if !enabled || user.suspended {
        return Err(MoodleError::invalid_key());
    }
    if let Consume::Once = consume {
        let (registry, user_id, key_id) = (state.registry.clone(), user.id, key.id);
        let actor = crate::keys::ops::Actor { user_id: Some(user_id), ip: Some(client.ip_string()) };
        let revoked = state
            .db
            .write(move |conn| {
                crate::keys::ops::revoke(
                    conn,
                    &registry,
                    user_id,
                    &crate::db::keys::Selection::One(key_id),
                    crate::keys::ops::Scope::Everything,
                    &actor,
                    "used",
                    now(),
                )
            })
            .await?;
        // Two requests racing with one single-use key: only the one that revoked it wins.
        if revoked == 0 {
            return Err(MoodleError::invalid_key());
        }
    }
    state.usage.record(key.id, &client.user_agent, client.ip, now());
    Ok((key, user))
}
