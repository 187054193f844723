//! Sign-in at /login/index.php and sign-out at /login/logout.php, with Moodle's field names.

use super::client::ClientInfo;
use super::session::{self, CurrentSession};
use super::templates::render;
use crate::accounts;
use crate::app::State;
use crate::domain::local_url::local_target;
use crate::domain::secret::{constant_time_eq, ClearSecret};
use crate::domain::time::now;
use crate::error::AppError;
use crate::keys::ops::{self, Actor, Scope};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// The anti-forgery token of the sign-in form (Moodle's `logintoken`), kept in a cookie and in
/// the form: a cross-site page can post the form but cannot read or set the cookie.
const LOGIN_TOKEN_COOKIE: &str = "userkeys_logintoken";

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    logintoken: String,
    /// Where to go once signed in (Moodle's `wantsurl`), somewhere on this site.
    #[serde(default)]
    wantsurl: String,
}

#[derive(Deserialize)]
pub struct FormQuery {
    #[serde(default)]
    wantsurl: String,
}

/// Where a sign-in leads: the page asked for, if it is on this site, else the keys page.
fn destination(state: &State, wantsurl: &str) -> String {
    local_target(wantsurl, &state.config.site_root()).unwrap_or_else(|| "/user/managetoken.php".to_owned())
}

pub async fn form(
    state: State,
    session: Option<CurrentSession>,
    query: web::Query<FormQuery>,
) -> Result<HttpResponse, AppError> {
    if session.is_some() {
        return Ok(redirect(&destination(&state, &query.wantsurl)));
    }
    login_page(&state, "", &query.wantsurl, None, actix_web::http::StatusCode::OK)
}

fn login_page(
    state: &State,
    username: &str,
    wantsurl: &str,
    error: Option<&str>,
    status: actix_web::http::StatusCode,
) -> Result<HttpResponse, AppError> {
    let token = ClearSecret::token();
    let mut ctx = tera::Context::new();
    ctx.insert("site_name", &state.config.site_name);
    ctx.insert("username", username);
    ctx.insert("wantsurl", &local_target(wantsurl, &state.config.site_root()).unwrap_or_default());
    ctx.insert("logintoken", token.expose());
    ctx.insert("error", &error);
    let mut response = render(&state.templates, "login.html", &ctx)?;
    *response.status_mut() = status;
    let cookie = Cookie::build(LOGIN_TOKEN_COOKIE, token.expose().to_owned())
        .path("/login/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.secure_cookies)
        .finish();
    response.add_cookie(&cookie).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

pub async fn submit(
    state: State,
    req: HttpRequest,
    client: ClientInfo,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let cookie = req.cookie(LOGIN_TOKEN_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if cookie.is_empty() || !constant_time_eq(cookie.as_bytes(), form.logintoken.as_bytes()) {
        return login_page(
            &state,
            &form.username,
            &form.wantsurl,
            Some("The sign-in form had expired. Please try again."),
            actix_web::http::StatusCode::FORBIDDEN,
        );
    }
    let username = form.username.clone();
    let ip = client.ip_string();
    let (user, throttled) = state
        .db
        .read(move |conn| {
            let user = accounts::find_by_login_name(conn, &username)?;
            let throttled = accounts::sign_in_throttled(conn, user.as_ref().map(|u| u.id), &ip)?;
            Ok((user, throttled))
        })
        .await?;
    if throttled {
        let reason = accounts::sign_in_failure(user.as_ref(), false, true);
        accounts::record_sign_in_failure(&state.db, false, user.map(|u| u.id), client.ip_string(), reason).await?;
        let message =
            format!("Too many failed sign-ins. Wait {} minutes and try again.", accounts::THROTTLE_WINDOW_MINUTES);
        return login_page(
            &state,
            &form.username,
            &form.wantsurl,
            Some(&message),
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let password_ok = state.passwords.matches(user.as_ref(), &form.password).await;
    let user = match user {
        Some(u) if password_ok && !u.suspended => u,
        other => {
            let reason = accounts::sign_in_failure(other.as_ref(), password_ok, false);
            accounts::record_sign_in_failure(&state.db, false, other.map(|u| u.id), client.ip_string(), reason).await?;
            let message = if reason == "suspended" {
                "Your account has been suspended."
            } else {
                "Invalid login, please try again"
            };
            return login_page(&state, &form.username, &form.wantsurl, Some(message), actix_web::http::StatusCode::OK);
        }
    };
    let cookie = session::start(&state, &user, &client).await?;
    let mut response = redirect(&destination(&state, &form.wantsurl));
    response.add_cookie(&cookie).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

pub async fn confirm_logout(state: State, session: CurrentSession) -> Result<HttpResponse, AppError> {
    let mut ctx = tera::Context::new();
    ctx.insert("site_name", &state.config.site_name);
    ctx.insert("user", &session.user.fullname);
    ctx.insert("sesskey", &session.sesskey);
    ctx.insert("title", "Sign out");
    ctx.insert("question", "Sign out of this browser?");
    ctx.insert("action_url", "/login/logout.php");
    ctx.insert("fields", &Vec::<(String, String)>::new());
    ctx.insert("confirm_label", "Sign out");
    render(&state.templates, "confirm.html", &ctx)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    sesskey: Option<String>,
}

pub async fn logout(
    state: State,
    session: CurrentSession,
    client: ClientInfo,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, AppError> {
    session.check_sesskey(form.sesskey.as_deref())?;
    let (user_id, key_id) = (session.user.id, session.key.id);
    let actor = Actor { user_id: Some(user_id), ip: Some(client.ip_string()) };
    let registry = state.registry.clone();
    state
        .db
        .write(move |conn| {
            let selection = crate::db::keys::Selection::One(key_id);
            ops::revoke(conn, &registry, user_id, &selection, Scope::Everything, &actor, "signed out", now())
        })
        .await?;
    let mut response = redirect("/login/index.php");
    response.add_cookie(&session::removal_cookie(&state)).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to.to_owned())).finish()
}
