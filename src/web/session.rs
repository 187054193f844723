//! A web session is a key of type `web_session`: the cookie holds its secret, the database its
//! hash. Nothing about a session lives in the instance, so any instance can serve any request.

use super::client::ClientInfo;
use crate::app::{AppState, State};
use crate::db::models::{KeyRow, User};
use crate::domain::secret::{constant_time_eq, derive, ClearSecret};
use crate::domain::time::now;
use crate::domain::user_agent::describe_user_agent;
use crate::error::AppError;
use crate::keys::ops::{self, Actor, KeyRequest, SecretKind};
use crate::keys::WEB_SESSION;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use chrono::Duration;
use std::future::Future;
use std::pin::Pin;

/// Moodle's cookie name, so a reverse proxy configured for Moodle treats it alike.
pub const SESSION_COOKIE: &str = "MoodleSession";

#[derive(Clone, Debug)]
pub struct CurrentSession {
    pub user: User,
    pub key: KeyRow,
    /// The CSRF token of this session (Moodle's `sesskey`), derived from its secret.
    pub sesskey: String,
}

impl CurrentSession {
    /// Refuses a state-changing request whose `sesskey` is missing or not this session's.
    pub fn check_sesskey(&self, submitted: Option<&str>) -> Result<(), AppError> {
        match submitted {
            Some(s) if constant_time_eq(s.as_bytes(), self.sesskey.as_bytes()) => Ok(()),
            _ => Err(AppError::StaleForm),
        }
    }
}

pub fn sesskey_for(secret: &ClearSecret) -> String {
    derive("sesskey", secret, 20)
}

impl FromRequest for CurrentSession {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
        let client = ClientInfo::of(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::Internal("application state missing".into()))?;
            let secret = cookie.filter(|c| c.len() == 64).map(|c| ClearSecret::from_client(&c));
            let Some(secret) = secret else { return Err(AppError::LoginRequired) };
            resume(&state, secret, &client).await
        })
    }
}

/// Validates the session positively: it exists, is a session, is not revoked or expired, and
/// its user is not suspended. Records the use and slides the expiry forward.
async fn resume(state: &State, secret: ClearSecret, client: &ClientInfo) -> Result<CurrentSession, AppError> {
    let hash = secret.hash();
    let found = state.db.read(move |conn| crate::db::keys::find_by_secret_hash(conn, hash.as_str())).await?;
    let now = now();
    let Some((key, user)) = found else { return Err(AppError::LoginRequired) };
    if key.key_type != WEB_SESSION || !key.is_active(now) || user.suspended {
        return Err(AppError::LoginRequired);
    }
    state.usage.record(key.id, &client.user_agent, client.ip, now);
    let timeout = Duration::minutes(state.config.session_timeout_minutes);
    let new_expiry = now + timeout;
    // Extend at most once a minute: a page view should not always be a write.
    if key.valid_until.is_none_or(|v| new_expiry - v > Duration::minutes(1)) {
        let id = key.id;
        state.db.write(move |conn| crate::db::keys::extend(conn, id, new_expiry)).await?;
    }
    Ok(CurrentSession { sesskey: sesskey_for(&secret), user, key })
}

/// Starts a session for `user`; returns the cookie to set.
pub async fn start(state: &State, user: &User, client: &ClientInfo) -> Result<Cookie<'static>, AppError> {
    let now = now();
    let request = KeyRequest {
        user_id: user.id,
        key_type: WEB_SESSION.into(),
        name: describe_user_agent(&client.user_agent),
        secret: SecretKind::Long,
        valid_until: Some(now + Duration::minutes(state.config.session_timeout_minutes)),
        ..Default::default()
    };
    let actor = Actor { user_id: Some(user.id), ip: Some(client.ip_string()) };
    let issued = state.db.write(move |conn| ops::issue(conn, request, &actor, now)).await?;
    let secret = issued.secret.ok_or_else(|| AppError::Internal("session issued without a secret".into()))?;
    state.usage.record(issued.id, &client.user_agent, client.ip, now);
    Ok(session_cookie(state, secret.expose().to_owned()))
}

pub fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.secure_cookies)
        .finish()
}

pub fn removal_cookie(state: &AppState) -> Cookie<'static> {
    let mut cookie = session_cookie(state, String::new());
    cookie.make_removal();
    cookie
}
