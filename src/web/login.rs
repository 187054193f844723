//! Sign-in at /login/index.php and sign-out at /login/logout.php, with Moodle's field names.

use super::error::AppError;
use super::session::{self, CurrentSession};
use super::templates::render;
use super::{redirect, State};
use crate::core::{Channel, Client, CoreError, SignInRefusal};
use crate::domain::local_url::local_target;
use crate::domain::secret::{constant_time_eq, ClearSecret};
use actix_web::cookie::{Cookie, SameSite};
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
    /// Back from setting a new password with a reset link.
    #[serde(default)]
    reset: Option<String>,
    /// Sent here because this browser's session had ended.
    #[serde(default)]
    ended: Option<String>,
}

/// Where a sign-in leads: the page asked for, if it is on this site, else the keys page.
fn destination(state: &State, wantsurl: &str) -> String {
    local_target(wantsurl, &state.core.config().site_root()).unwrap_or_else(|| "/user/managetoken.php".to_owned())
}

pub async fn form(
    state: State,
    session: Option<CurrentSession>,
    query: web::Query<FormQuery>,
) -> Result<HttpResponse, AppError> {
    if session.is_some() {
        return Ok(redirect(&destination(&state, &query.wantsurl)));
    }
    let notice = if query.reset.is_some() {
        Some("Your password was changed. Sign in with the new one.")
    } else if query.ended.is_some() {
        Some("You were signed out: your session ended here, was signed out from another device, or was ended by an administrator. Sign in again to continue.")
    } else if !query.wantsurl.is_empty() {
        Some("Sign in to continue.")
    } else {
        None
    };
    login_page_with(&state, "", &query.wantsurl, None, notice, actix_web::http::StatusCode::OK)
}

fn login_page(
    state: &State,
    username: &str,
    wantsurl: &str,
    error: Option<&str>,
    status: actix_web::http::StatusCode,
) -> Result<HttpResponse, AppError> {
    login_page_with(state, username, wantsurl, error, None, status)
}

fn login_page_with(
    state: &State,
    username: &str,
    wantsurl: &str,
    error: Option<&str>,
    notice: Option<&str>,
    status: actix_web::http::StatusCode,
) -> Result<HttpResponse, AppError> {
    let token = ClearSecret::token();
    let mut ctx = tera::Context::new();
    ctx.insert("notice", &notice);
    ctx.insert("can_reset", &state.core.can_mail());
    ctx.insert("site_name", &state.core.config().site_name);
    ctx.insert("username", username);
    ctx.insert("wantsurl", &local_target(wantsurl, &state.core.config().site_root()).unwrap_or_default());
    ctx.insert("logintoken", token.expose());
    ctx.insert("error", &error);
    let mut response = render(&state.templates, "login.html", &ctx)?;
    *response.status_mut() = status;
    response.add_cookie(&login_token_cookie(state, &token)).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

/// The cookie half of a sign-in page's form token: a cross-site page can post the form but
/// cannot read or set the cookie.
pub(super) fn login_token_cookie(state: &State, token: &ClearSecret) -> Cookie<'static> {
    Cookie::build(LOGIN_TOKEN_COOKIE, token.expose().to_owned())
        .path("/login/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.core.config().secure_cookies)
        .finish()
}

/// Whether a posted form token is the one in the request's cookie.
pub(super) fn login_token_matches(req: &HttpRequest, submitted: &str) -> bool {
    let cookie = req.cookie(LOGIN_TOKEN_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    !cookie.is_empty() && constant_time_eq(cookie.as_bytes(), submitted.as_bytes())
}

pub async fn submit(
    state: State,
    req: HttpRequest,
    client: Client,
    earlier: Option<CurrentSession>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    if !login_token_matches(&req, &form.logintoken) {
        return login_page(
            &state,
            &form.username,
            &form.wantsurl,
            Some("The sign-in form had expired. Please try again."),
            actix_web::http::StatusCode::FORBIDDEN,
        );
    }
    let user = match state.core.sign_in(&form.username, &form.password, Channel::Page, &client).await {
        Ok(user) => user,
        Err(CoreError::SignIn(refusal)) => {
            let (message, status) = match refusal {
                SignInRefusal::Throttled { seconds } => {
                    (super::error::throttled_words(seconds), actix_web::http::StatusCode::TOO_MANY_REQUESTS)
                }
                SignInRefusal::Suspended => {
                    ("Your account has been suspended.".to_owned(), actix_web::http::StatusCode::OK)
                }
                SignInRefusal::Invalid => {
                    ("Invalid login, please try again".to_owned(), actix_web::http::StatusCode::OK)
                }
            };
            return login_page(&state, &form.username, &form.wantsurl, Some(&message), status);
        }
        Err(e) => return Err(e.into()),
    };
    // Signing in over a session ends it: a browser holds one session at a time.
    if let Some(earlier) = earlier {
        state.core.end_session(&earlier, &client).await?;
    }
    let secret = state.core.start_session(user.id, &client).await?;
    let mut response = redirect(&destination(&state, &form.wantsurl));
    response
        .add_cookie(&session::session_cookie(&state, secret.expose().to_owned()))
        .map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

pub async fn confirm_logout(state: State, session: CurrentSession) -> Result<HttpResponse, AppError> {
    let mut ctx = tera::Context::new();
    ctx.insert("site_name", &state.core.config().site_name);
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
    client: Client,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, AppError> {
    session.check_sesskey(form.sesskey.as_deref())?;
    state.core.end_session(&session, &client).await?;
    let mut response = redirect("/login/index.php");
    response.add_cookie(&session::removal_cookie(&state)).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}
