//! A message for the next page ("Revoked “Pixel 8”."), carried across a redirect in a
//! short-lived cookie rather than the address, so a reload does not repeat it.

use super::error::AppError;
use super::{redirect, State};
use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse};

const COOKIE: &str = "userkeys_flash";

/// Redirects to `to`, where `message` is shown once.
pub fn redirect_with(state: &State, to: &str, message: &str) -> Result<HttpResponse, AppError> {
    let cookie = Cookie::build(COOKIE, hex::encode(message))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.core.config().secure_cookies)
        .max_age(CookieAge::minutes(1))
        .finish();
    let mut response = redirect(to);
    response.add_cookie(&cookie).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

/// The message this request carries, if any (call `clear` on the answer that shows it).
pub fn take(req: &HttpRequest) -> Option<String> {
    let bytes = hex::decode(req.cookie(COOKIE)?.value()).ok()?;
    String::from_utf8(bytes).ok().map(|m| m.chars().take(500).collect())
}

/// Removes the message once shown.
pub fn clear(response: &mut HttpResponse) -> Result<(), AppError> {
    let mut removal = Cookie::build(COOKIE, "").path("/").finish();
    removal.make_removal();
    response.add_cookie(&removal).map_err(|e| AppError::Internal(e.to_string()))
}
