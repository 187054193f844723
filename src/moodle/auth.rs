//! Validating a web-service token, positively: it exists, is a web-service token, is not
//! revoked or expired, the caller's IP is inside its restriction, its type and service are
//! enabled and its user is not suspended. Each refusal is Moodle's error for that case.

use super::error::MoodleError;
use crate::app::State;
use crate::db::models::{KeyRow, Service, User};
use crate::db::{DbConn, DbResult};
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::secret::SecretHash;
use crate::domain::time::now;
use crate::keys::{KeyTypeRegistry, WEBSERVICE_TOKEN};
use chrono::NaiveDateTime;
use std::net::IpAddr;
use std::sync::Arc;

/// What a call needs to know about the token's owner.
#[derive(Debug)]
pub struct TokenOwner {
    pub id: i64,
    pub username: String,
    pub fullname: String,
    pub is_site_admin: bool,
    pub suspended: bool,
    /// This user's fields of the site-info answer, serialised at first use.
    pub site_info: std::sync::OnceLock<Box<str>>,
}

/// A service as tokens see it: the row, its functions, and whether tokens are switched on.
#[derive(Debug)]
pub struct ServiceAccess {
    pub service: Service,
    pub functions: Vec<String>,
    pub type_enabled: bool,
    /// This service's fields of the site-info answer, serialised at first use.
    pub site_info: std::sync::OnceLock<Box<str>>,
}

/// A valid (not revoked) web-service token, as small as a call allows: owners and services are
/// shared between tokens.
#[derive(Debug)]
pub struct AuthenticatedToken {
    pub key_id: i64,
    pub valid_until: Option<NaiveDateTime>,
    pub ip_restriction: Option<IpRestriction>,
    pub private_hash: Option<Box<str>>,
    pub user: Arc<TokenOwner>,
    pub service: Arc<ServiceAccess>,
}

impl ServiceAccess {
    /// Whether a call of this function is allowed: the service is on and offers it.
    pub fn allows(&self, function: &str) -> bool {
        self.service.enabled && self.functions.iter().any(|f| f == function)
    }
}

impl AuthenticatedToken {
    /// A token row and its owner, if it is an unrevoked web-service token.
    pub fn from_rows(key: KeyRow, user: &User, service: Arc<ServiceAccess>) -> Option<Self> {
        // An expired token whose client has been told so is gone, as Moodle deletes it.
        let gone = key.revoked_at.is_some() || key.expiry_reported_at.is_some();
        if key.key_type != WEBSERVICE_TOKEN || gone || key.service_id != Some(service.service.id) {
            return None;
        }
        let ip_restriction = match key.ip_restriction.as_deref().map(IpRestriction::parse) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(r))) => Some(r),
            // An unreadable restriction refuses everything rather than allowing everything.
            Some(Err(_)) => IpRestriction::parse("0.0.0.0/32").ok().flatten(),
        };
        Some(AuthenticatedToken {
            key_id: key.id,
            valid_until: key.valid_until,
            ip_restriction,
            private_hash: key.private_hash.map(String::into_boxed_str),
            user: Arc::new(TokenOwner {
                id: user.id,
                username: user.username.clone(),
                fullname: user.fullname.clone(),
                is_site_admin: user.is_site_admin,
                suspended: user.suspended,
                site_info: Default::default(),
            }),
            service,
        })
    }
}

/// The service of a token with its functions and the token type's switch, from the database.
pub fn load_service(conn: &mut DbConn, registry: &KeyTypeRegistry, service_id: i64) -> DbResult<Option<ServiceAccess>> {
    let Some(service) = crate::db::services::find(conn, service_id)? else { return Ok(None) };
    Ok(Some(ServiceAccess {
        functions: crate::db::services::functions(conn, service.id)?,
        type_enabled: crate::db::key_types::enabled(conn, WEBSERVICE_TOKEN, registry.on_by_default(WEBSERVICE_TOKEN))?,
        service,
        site_info: Default::default(),
    }))
}

pub async fn authenticate(state: &State, wstoken: &str, ip: IpAddr) -> Result<Arc<AuthenticatedToken>, MoodleError> {
    // A Moodle token is 32 characters; anything far off that cannot be one.
    let token =
        Some(wstoken.trim()).filter(|t| !t.is_empty() && t.len() <= 128).ok_or_else(MoodleError::invalid_token)?;
    let digest = SecretHash::digest(token);
    let cached = state.token_cache.as_ref().and_then(|c| c.get(&digest));
    let token = match cached {
        Some(token) => token,
        None => {
            let read_at = state.db.generation();
            let hash = SecretHash::from_digest(&digest);
            let token = load(state, hash.as_str().to_owned()).await?.ok_or_else(MoodleError::invalid_token)?;
            match &state.token_cache {
                Some(cache) => cache.insert(digest, token, read_at, &state.db),
                None => Arc::new(token),
            }
        }
    };
    if token.valid_until.is_some_and(|v| v <= now()) {
        return Err(report_expiry(state, token.key_id).await);
    }
    check(&token, ip)?;
    Ok(token)
}

/// Moodle deletes an expired token on its first refused use, so the app hears "token expired"
/// once and `invalidtoken` after that, and asks the person to sign in again. The row is kept
/// (marked told) so the pages still show the key as expired.
async fn report_expiry(state: &State, key_id: i64) -> MoodleError {
    match state.db.write(move |conn| crate::db::keys::report_expiry(conn, key_id, now())).await {
        Ok(true) => MoodleError::token_expired(),
        Ok(false) => MoodleError::invalid_token(),
        Err(e) => e.into(),
    }
}

/// One trip to the database for the token and its owner (and its service, unless cached).
async fn load(state: &State, hash: String) -> Result<Option<AuthenticatedToken>, MoodleError> {
    let shared = state.clone();
    let token = state
        .db
        .read(move |conn| {
            let state = shared;
            let Some((key, user)) = crate::db::keys::find_by_secret_hash(conn, &hash)? else { return Ok(None) };
            let Some(service_id) = key.service_id else { return Ok(None) };
            let cached = state.token_cache.as_ref().and_then(|c| c.service(service_id));
            let service = match cached {
                Some(s) => s,
                None => match load_service(conn, &state.registry, service_id)? {
                    Some(s) => Arc::new(s),
                    None => return Ok(None),
                },
            };
            Ok(AuthenticatedToken::from_rows(key, &user, service))
        })
        .await?;
    Ok(token)
}

/// The checks that depend on the moment and the caller, made on every request.
fn check(token: &AuthenticatedToken, ip: IpAddr) -> Result<(), MoodleError> {
    if token.ip_restriction.as_ref().is_some_and(|r| !r.allows(ip)) {
        return Err(MoodleError::ip_not_allowed(&ip.to_string()));
    }
    if !token.service.type_enabled {
        return Err(MoodleError::access("Web-service tokens are disabled on this site."));
    }
    if token.user.suspended {
        return Err(MoodleError::user_suspended(&token.user.username));
    }
    Ok(())
}
