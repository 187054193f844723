//! Validating a web-service token, positively: it exists, is a web-service token, is not
//! revoked or expired, the caller's IP is inside its restriction, its type is enabled and its
//! user is not suspended. Each refusal is Moodle's error for that case.

use super::error::MoodleError;
use crate::app::State;
use crate::db::models::{KeyRow, Service, User};
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::secret::ClearSecret;
use crate::domain::time::now;
use crate::keys::WEBSERVICE_TOKEN;
use std::net::IpAddr;
use std::sync::Arc;

/// A token with everything a call needs to know about it, read in one go.
#[derive(Clone, Debug)]
pub struct AuthenticatedToken {
    pub key: KeyRow,
    pub user: User,
    pub service: Arc<Service>,
    /// The functions the token's service allows.
    pub functions: Arc<Vec<String>>,
    pub type_enabled: bool,
    pub ip_restriction: Option<IpRestriction>,
}

pub async fn authenticate(state: &State, wstoken: Option<&str>, ip: IpAddr) -> Result<Arc<AuthenticatedToken>, MoodleError> {
    // A Moodle token is 32 characters; anything far off that cannot be one.
    let token = wstoken.map(str::trim).filter(|t| !t.is_empty() && t.len() <= 128).ok_or_else(MoodleError::invalid_token)?;
    let hash = ClearSecret::from_client(token).hash();
    let cached = state.token_cache.as_ref().and_then(|c| c.get(hash.as_str(), state.db.generation()));
    let token = match cached {
        Some(token) => token,
        None => {
            let read_at = state.db.generation();
            let token = load(state, hash.as_str().to_owned()).await?;
            match &state.token_cache {
                Some(cache) => cache.insert(hash.as_str(), token, read_at, state.db.generation()),
                None => Arc::new(token),
            }
        }
    };
    check(&token, ip)?;
    Ok(token)
}

/// One trip to the database for the token, its owner, its service and the switches.
async fn load(state: &State, hash: String) -> Result<AuthenticatedToken, MoodleError> {
    let type_default = state.registry.get(WEBSERVICE_TOKEN).is_none_or(|t| t.enabled_by_default);
    let found = state
        .db
        .read(move |conn| {
            let Some((key, user)) = crate::db::keys::find_by_secret_hash(conn, &hash)? else {
                return Ok(None);
            };
            // A revoked token is gone, as a deleted row is in Moodle.
            if key.key_type != WEBSERVICE_TOKEN || key.revoked_at.is_some() {
                return Ok(None);
            }
            let Some(service) = key.service_id.map(|id| crate::db::services::find(conn, id)).transpose()?.flatten() else {
                return Ok(None);
            };
            let functions = crate::db::services::functions(conn, service.id)?;
            let type_enabled = crate::db::key_types::enabled(conn, &key.key_type, type_default)?;
            Ok(Some((key, user, service, functions, type_enabled)))
        })
        .await?;
    let (key, user, service, functions, type_enabled) = found.ok_or_else(MoodleError::invalid_token)?;
    let ip_restriction = match key.ip_restriction.as_deref().map(IpRestriction::parse) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(r))) => Some(r),
        // An unreadable restriction refuses everything rather than allowing everything.
        Some(Err(_)) => Some(IpRestriction::parse("0.0.0.0/32").ok().flatten().expect("a valid range")),
    };
    Ok(AuthenticatedToken {
        key,
        user,
        service: Arc::new(service),
        functions: Arc::new(functions),
        type_enabled,
        ip_restriction,
    })
}

/// The checks that depend on the moment and the caller, made on every request.
fn check(token: &AuthenticatedToken, ip: IpAddr) -> Result<(), MoodleError> {
    if token.key.valid_until.is_some_and(|v| v <= now()) {
        return Err(MoodleError::token_expired());
    }
    if token.ip_restriction.as_ref().is_some_and(|r| !r.allows(ip)) {
        return Err(MoodleError::ip_not_allowed(&ip.to_string()));
    }
    if !token.type_enabled {
        return Err(MoodleError::access("Web-service tokens are disabled on this site."));
    }
    if token.user.suspended {
        return Err(MoodleError::user_suspended(&token.user.username));
    }
    Ok(())
}
