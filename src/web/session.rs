//! The signed-in browser of a request: its `MoodleSession` cookie, resumed by the core.

use super::error::AppError;
use super::State;
use crate::core::Session;
use crate::http::client_of;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{dev::Payload, FromRequest, HttpRequest};
use std::future::Future;
use std::pin::Pin;

/// Moodle's cookie name, so a reverse proxy configured for Moodle treats it alike.
pub const SESSION_COOKIE: &str = "MoodleSession";

#[derive(Clone, Debug)]
pub struct CurrentSession(pub Session);

impl std::ops::Deref for CurrentSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0
    }
}

impl CurrentSession {
    /// Refuses a state-changing request whose `sesskey` is missing or not this session's.
    pub fn check_sesskey(&self, submitted: Option<&str>) -> Result<(), AppError> {
        if self.0.sesskey_matches(submitted) {
            Ok(())
        } else {
            Err(AppError::StaleForm)
        }
    }
}

impl FromRequest for CurrentSession {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<State>().cloned();
        let cookie = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()).filter(|c| !c.is_empty());
        let client = client_of(req);
        // Back here after signing in, for a page one reads (a form's answer is not a place to return to).
        let wants = (req.method() == actix_web::http::Method::GET).then(|| match req.query_string() {
            "" => req.path().to_owned(),
            q => format!("{}?{q}", req.path()),
        });
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::Internal("application state missing".into()))?;
            let Some(cookie) = cookie else { return Err(AppError::LoginRequired { wants, ended: false }) };
            match state.core.resume_session(&cookie, &client).await {
                Ok(session) => Ok(CurrentSession(session)),
                Err(crate::core::CoreError::Db(e)) => Err(AppError::Db(e)),
                Err(_) => Err(AppError::LoginRequired { wants, ended: true }),
            }
        })
    }
}

pub fn session_cookie(state: &State, value: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.core.config().secure_cookies)
        .finish()
}

pub fn removal_cookie(state: &State) -> Cookie<'static> {
    let mut cookie = session_cookie(state, String::new());
    cookie.make_removal();
    cookie
}
