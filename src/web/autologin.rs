//! /admin/tool/mobile/autologin.php: the app opens the browser with a single-use key and the
//! browser is signed in. Errors here are pages, since a person is looking at them.

use super::error::AppError;
use super::session::session_cookie;
use super::State;
use crate::domain::local_url::local_target;
use crate::http::client_of;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn autologin(state: State, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, AppError> {
    let client = client_of(&req);
    // Moodle reads these from the query string or the posted form alike.
    let pairs: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .chain(form_urlencoded::parse(&body))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let userid = field("userid").and_then(|u| u.trim().parse::<i64>().ok());
    let (Some(userid), Some(key)) = (userid, field("key")) else {
        return Err(AppError::BadRequest("This sign-in link is incomplete.".into()));
    };
    let (_, secret) = state.core.auto_login(&key, userid, &client).await.map_err(|e| match e {
        crate::core::CoreError::Db(e) => AppError::Db(e),
        crate::core::CoreError::Refused(refusal) => {
            AppError::Forbidden(format!("This sign-in link cannot be used: {}.", refusal_words(&refusal)))
        }
        other => AppError::from(other),
    })?;
    let target = field("urltogo")
        .and_then(|to| local_target(&to, &state.core.config().site_root()))
        .unwrap_or_else(|| "/".to_owned());
    let mut response = HttpResponse::SeeOther().insert_header((header::LOCATION, target)).finish();
    response
        .add_cookie(&session_cookie(&state, secret.expose().to_owned()))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

/// Moodle's words for why a private key is refused.
fn refusal_words(refusal: &crate::core::Refusal) -> &'static str {
    use crate::core::Refusal::*;
    match refusal {
        Expired => "Expired key",
        AddressNotAllowed(_) => "Client IP address mismatch",
        Unknown | TypeDisabled | OwnerSuspended(_) => "Incorrect key",
    }
}
