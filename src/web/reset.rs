//! Forgotten passwords: /login/forgot_password.php asks for a link by username or email (the
//! answer is the same whether an account matched), /login/reset_password.php opens the link
//! and sets a new password.

use super::error::AppError;
use super::login::{login_token_cookie, login_token_matches};
use super::templates::render;
use super::{redirect, State};
use crate::core::{Client, CoreError, MIN_PASSWORD_CHARS};
use crate::domain::secret::ClearSecret;
use crate::keys::types::password_reset::LIFETIME_MINUTES;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

fn context(state: &State) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("site_name", &state.core.config().site_name);
    ctx.insert("min_chars", &MIN_PASSWORD_CHARS);
    ctx.insert("minutes", &LIFETIME_MINUTES);
    ctx
}

fn forgot_page(state: &State, error: Option<&str>, sent: bool, status: StatusCode) -> Result<HttpResponse, AppError> {
    let token = ClearSecret::token();
    let mut ctx = context(state);
    ctx.insert("error", &error);
    ctx.insert("sent", &sent);
    ctx.insert("logintoken", token.expose());
    let mut response = render(&state.templates, "forgot.html", &ctx)?;
    *response.status_mut() = status;
    response.add_cookie(&login_token_cookie(state, &token)).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

pub async fn forgot_form(state: State) -> Result<HttpResponse, AppError> {
    if !state.core.can_mail() {
        return Err(AppError::Forbidden("This site cannot send email; ask an administrator for a reset link.".into()));
    }
    forgot_page(&state, None, false, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    who: String,
    #[serde(default)]
    logintoken: String,
}

pub async fn forgot_submit(
    state: State,
    req: HttpRequest,
    client: Client,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, AppError> {
    if !login_token_matches(&req, &form.logintoken) {
        return forgot_page(&state, Some("The form had expired. Please try again."), false, StatusCode::FORBIDDEN);
    }
    match state.core.request_password_reset(&form.who, &client).await {
        Ok(()) => forgot_page(&state, None, true, StatusCode::OK),
        Err(CoreError::Invalid(message)) => forgot_page(&state, Some(&message), false, StatusCode::BAD_REQUEST),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct ResetQuery {
    #[serde(default)]
    token: String,
}

fn reset_page(
    state: &State,
    token: &str,
    username: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    let mut ctx = context(state);
    ctx.insert("token", token);
    ctx.insert("valid", &username.is_some());
    ctx.insert("username", &username.unwrap_or_default());
    ctx.insert("error", &error);
    let mut response = render(&state.templates, "reset.html", &ctx)?;
    *response.status_mut() = status;
    Ok(response)
}

const UNUSABLE: &str = "This link cannot be used: it has expired, was used already, or was replaced by a newer one.";

pub async fn reset_form(state: State, client: Client, query: web::Query<ResetQuery>) -> Result<HttpResponse, AppError> {
    match state.core.check_reset_link(&query.token, &client).await {
        Ok(owner) => reset_page(&state, &query.token, Some(&owner.username), None, StatusCode::OK),
        Err(CoreError::Refused(_)) => reset_page(&state, "", None, Some(UNUSABLE), StatusCode::FORBIDDEN),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub async fn reset_submit(state: State, client: Client, form: web::Form<ResetForm>) -> Result<HttpResponse, AppError> {
    // The link's own secret is what makes this form genuine: nobody else has it.
    let owner = match state.core.check_reset_link(&form.token, &client).await {
        Ok(owner) => owner,
        Err(CoreError::Refused(_)) => return reset_page(&state, "", None, Some(UNUSABLE), StatusCode::FORBIDDEN),
        Err(e) => return Err(e.into()),
    };
    if form.new != form.confirm {
        let message = "The two new passwords are not the same.";
        return reset_page(&state, &form.token, Some(&owner.username), Some(message), StatusCode::BAD_REQUEST);
    }
    match state.core.reset_password(&form.token, &form.new, &client).await {
        Ok(_) => Ok(redirect("/login/index.php?reset=1")),
        Err(CoreError::Invalid(message)) => {
            reset_page(&state, &form.token, Some(&owner.username), Some(&message), StatusCode::BAD_REQUEST)
        }
        Err(CoreError::Refused(_)) => reset_page(&state, "", None, Some(UNUSABLE), StatusCode::FORBIDDEN),
        Err(e) => Err(e.into()),
    }
}
