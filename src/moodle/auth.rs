//! Validating a web-service token, positively: it exists, is a web-service token, is not
//! revoked or expired, the caller's IP is inside its restriction, its type is enabled and its
//! user is not suspended. Each refusal is Moodle's error for that case.

use super::error::MoodleError;
use crate::app::State;
use crate::db::models::{KeyRow, Service, User};
use crate::domain::ip_restriction::stored_allows;
use crate::domain::secret::ClearSecret;
use crate::domain::time::now;
use crate::keys::WEBSERVICE_TOKEN;
use std::net::IpAddr;

#[derive(Clone, Debug)]
pub struct AuthenticatedToken {
    pub key: KeyRow,
    pub user: User,
    pub service: Service,
}

pub async fn authenticate(state: &State, wstoken: Option<&str>, ip: IpAddr) -> Result<AuthenticatedToken, MoodleError> {
    // A Moodle token is 32 characters; anything far off that cannot be one.
    let token = wstoken.map(str::trim).filter(|t| !t.is_empty() && t.len() <= 128).ok_or_else(MoodleError::invalid_token)?;
    let hash = ClearSecret::from_client(token).hash();
    let type_default = state.registry.get(WEBSERVICE_TOKEN).is_none_or(|t| t.enabled_by_default);
    let found = state
        .db
        .read(move |conn| {
            let Some((key, user)) = crate::db::keys::find_by_secret_hash(conn, hash.as_str())? else {
                return Ok(None);
            };
            let service = match key.service_id {
                Some(id) => crate::db::services::find(conn, id)?,
                None => None,
            };
            let type_enabled = crate::db::key_types::enabled(conn, &key.key_type, type_default)?;
            Ok(Some((key, user, service, type_enabled)))
        })
        .await?;
    let Some((key, user, service, type_enabled)) = found else { return Err(MoodleError::invalid_token()) };
    // A revoked token is gone, as a deleted row is in Moodle.
    if key.key_type != WEBSERVICE_TOKEN || key.revoked_at.is_some() {
        return Err(MoodleError::invalid_token());
    }
    let Some(service) = service else { return Err(MoodleError::invalid_token()) };
    if key.valid_until.is_some_and(|v| v <= now()) {
        return Err(MoodleError::token_expired());
    }
    if !stored_allows(key.ip_restriction.as_deref(), ip) {
        return Err(MoodleError::ip_not_allowed(&ip.to_string()));
    }
    if !type_enabled {
        return Err(MoodleError::access("Web-service tokens are disabled on this site."));
    }
    if user.suspended {
        return Err(MoodleError::user_suspended(&user.username));
    }
    Ok(AuthenticatedToken { key, user, service })
}
