//! /admin/tool/mobile/launch.php: the app's sign-in "via a browser" (typeoflogin 2 and 3). The
//! app opens this page with a one-time `passport`; the person signs in on the site's own page if
//! they have not, and the browser is sent back to the app with a token of its own:
//! `moodlemobile://token=<base64 of md5(wwwroot + passport):::token[:::privatetoken]>`.

use super::error::AppError;
use super::session::CurrentSession;
use super::State;
use crate::core::Device;
use crate::http::client_of;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use md5::{Digest, Md5};

#[derive(serde::Deserialize)]
pub struct LaunchQuery {
    service: Option<String>,
    passport: Option<String>,
    urlscheme: Option<String>,
}

/// Schemes a token must never be sent to: ones a browser would load from the network or run.
const REFUSED_SCHEMES: &[&str] = &["http", "https", "ftp", "ws", "wss", "file", "data", "javascript", "blob", "about"];

pub async fn launch(
    state: State,
    req: HttpRequest,
    session: Option<CurrentSession>,
    query: web::Query<LaunchQuery>,
) -> Result<HttpResponse, AppError> {
    if state.core.config().type_of_login() == 1 {
        return Err(AppError::Forbidden("This site signs the app in with its own form, not through a browser.".into()));
    }
    let service = query.service.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let passport = query.passport.as_deref().map(str::trim).filter(|p| !p.is_empty() && p.len() <= 128);
    let (Some(service), Some(passport)) = (service, passport) else {
        return Err(AppError::BadRequest("This link to sign the app in is incomplete.".into()));
    };
    let scheme = query.urlscheme.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or("moodlemobile");
    if !valid_scheme(scheme) {
        return Err(AppError::BadRequest("This link names an address the app cannot be opened with.".into()));
    }
    let Some(session) = session else {
        // Back here once signed in.
        let here = format!("{}?{}", req.path(), req.query_string());
        let login = format!("/login/index.php?wantsurl={}", url_encode(&here));
        return Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, login)).finish());
    };
    let client = client_of(&req);
    let device = Device { user_agent: client.user_agent.chars().take(512).collect(), ..Default::default() };
    let granted = state.core.grant_token(&session.user, service, &device, &client).await.map_err(|e| match e {
        crate::core::CoreError::Db(e) => AppError::Db(e),
        other => AppError::Forbidden(format!("The app cannot be signed in: {}", AppError::from(other))),
    })?;
    let mut handed = format!("{}:::{}", site_id(&state.core.config().site_root(), passport), granted.token);
    if let Some(private) = granted.private_token {
        handed.push_str(&format!(":::{private}"));
    }
    let location = format!("{scheme}://token={}", base64::engine::general_purpose::STANDARD.encode(handed));
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, location.clone()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/html; charset=utf-8")
        // For a browser that does not follow a redirect to an app, a link to tap.
        .body(format!(
            "<!doctype html><title>Open the app</title><p><a id=\"launchapp\" href=\"{}\">Open the app</a></p>",
            tera::escape_html(&location)
        )))
}

/// A custom scheme such as `moodlemobile` or `mycollege-app`: letters first, then letters,
/// digits, `+`, `.` or `-`; never one a browser would fetch or run.
fn valid_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        && scheme.len() <= 64;
    well_formed && !REFUSED_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme))
}

fn url_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The site's id in a handed-back token: md5 of the site's address and the app's passport, as
/// the app recomputes it to know the token is from the site it opened.
fn site_id(wwwroot: &str, passport: &str) -> String {
    hex::encode(Md5::digest(format!("{wwwroot}{passport}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_app_schemes() {
        for ok in ["moodlemobile", "mycollege-app", "com.example.app+x"] {
            assert!(valid_scheme(ok), "{ok}");
        }
        for bad in ["https", "HTTP", "javascript", "", "1app", "app://", "a b", "data"] {
            assert!(!valid_scheme(bad), "{bad}");
        }
    }

    #[test]
    fn site_id_is_md5_of_wwwroot_and_passport() {
        // md5("https://moodle.example.org" . "12345"), as PHP computes it.
        assert_eq!(site_id("https://moodle.example.org", "12345"), "96d01510b7e932cb9dfce509c95a5b47");
    }
}
