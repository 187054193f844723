//! /admin/tool/mobile/autologin.php: the app opens the browser with a single-use key and the
//! browser is signed in. Errors here are pages, since a person is looking at them.

use super::functions::{check_autologin_prerequisites, wwwroot};
use super::params::Params;
use super::private_keys::{validate, Consume};
use super::server::read_params;
use crate::app::State;
use crate::error::AppError;
use crate::keys::AUTOLOGIN;
use crate::web::client::ClientInfo;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn autologin(state: State, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, AppError> {
    let client = ClientInfo::of(&req);
    let params = read_params(&req, payload).await.map_err(|e| AppError::BadRequest(e.message))?;
    let text = |p: &Params, n: &str| p.text(n).ok().flatten().map(str::to_owned);
    let userid = text(&params, "userid").and_then(|u| u.trim().parse::<i64>().ok());
    let key = text(&params, "key");
    let (Some(userid), Some(key)) = (userid, key) else {
        return Err(AppError::BadRequest("This sign-in link is incomplete.".into()));
    };
    let (_, user) = validate(&state, &key, AUTOLOGIN, Some(userid), &client, Consume::Once)
        .await
        .map_err(|e| AppError::Forbidden(format!("This sign-in link cannot be used: {}.", e.message)))?;
    check_autologin_prerequisites(&state, user.is_site_admin).map_err(|e| AppError::Forbidden(e.message))?;
    let cookie = crate::web::session::start(&state, &user, &client).await?;
    let target = local_target(text(&params, "urltogo").as_deref(), &wwwroot(&state));
    let mut response = HttpResponse::SeeOther().insert_header((header::LOCATION, target)).finish();
    response.add_cookie(&cookie).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

/// Moodle's PARAM_LOCALURL: only somewhere on this site, else the front page.
fn local_target(urltogo: Option<&str>, wwwroot: &str) -> String {
    match urltogo.map(str::trim) {
        Some(u) if u.starts_with('/') && !u.starts_with("//") && !u.contains('\\') => u.to_owned(),
        Some(u) if u == wwwroot || u.starts_with(&format!("{wwwroot}/")) => u.to_owned(),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::local_target;

    #[test]
    fn only_local_targets() {
        let root = "https://m.example.org";
        assert_eq!(local_target(Some("/user/managetoken.php"), root), "/user/managetoken.php");
        assert_eq!(local_target(Some("https://m.example.org/my/"), root), "https://m.example.org/my/");
        assert_eq!(local_target(Some("//evil.example"), root), "/");
        assert_eq!(local_target(Some("https://m.example.org.evil.example/"), root), "/");
        assert_eq!(local_target(None, root), "/");
    }
}
