//! /user/password.php: a person changes their own password, proving the current one; their
//! other sessions and tokens are signed out.

use super::error::AppError;
use super::session::CurrentSession;
use super::templates::{base_context, render};
use super::State;
use crate::core::{Client, CoreError, MIN_PASSWORD_CHARS};
use actix_web::{web, HttpResponse};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct PasswordForm {
    #[serde(default)]
    sesskey: Option<String>,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

fn page(
    state: &State,
    session: &CurrentSession,
    error: Option<&str>,
    revoked: Option<usize>,
) -> Result<HttpResponse, AppError> {
    let mut ctx = base_context(state, session, false);
    ctx.insert("username", &session.user.username);
    ctx.insert("min_chars", &MIN_PASSWORD_CHARS);
    ctx.insert("error", &error);
    ctx.insert("done", &revoked.is_some());
    ctx.insert("revoked", &revoked.unwrap_or(0));
    let mut response = render(&state.templates, "password.html", &ctx)?;
    if error.is_some() {
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

pub async fn form(state: State, session: CurrentSession) -> Result<HttpResponse, AppError> {
    page(&state, &session, None, None)
}

pub async fn submit(
    state: State,
    session: CurrentSession,
    client: Client,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    session.check_sesskey(form.sesskey.as_deref())?;
    if form.new != form.confirm {
        return page(&state, &session, Some("The two new passwords are not the same."), None);
    }
    match state.core.change_password(session.user.id, &form.current, &form.new, Some(session.key_id), &client).await {
        Ok(revoked) => page(&state, &session, None, Some(revoked)),
        Err(CoreError::Invalid(message)) => page(&state, &session, Some(&message), None),
        Err(e) => Err(e.into()),
    }
}
