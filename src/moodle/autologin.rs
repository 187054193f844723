//! /admin/tool/mobile/autologin.php: the app opens the browser with a single-use key and the
//! browser is signed in. Errors here are pages, since a person is looking at them.

use super::mobile::check_autologin_prerequisites;
use super::params::Params;
use super::private_keys::{validate, Consume};
use super::server::read_params;
use crate::app::State;
use crate::domain::local_url::local_target;
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
    check_autologin_prerequisites(&state.config, user.is_site_admin).map_err(|e| AppError::Forbidden(e.message))?;
    let cookie = crate::web::session::start(&state, &user, &client).await?;
    let target = text(&params, "urltogo")
        .and_then(|to| local_target(&to, &state.config.site_root()))
        .unwrap_or_else(|| "/".to_owned());
    let mut response = HttpResponse::SeeOther().insert_header((header::LOCATION, target)).finish();
    response.add_cookie(&cookie).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}
