//! /user/personaltoken.php: a person makes a personal access token for their own scripts —
//! a name, one service, optionally some of its functions, an expiry (required, at most the
//! site's maximum), an IP restriction. POST creates it and redirects to the page that shows it
//! once (as /user/newkey.php does); a mistake is told beside its field, with what was typed kept.

use super::error::AppError;
use super::session::CurrentSession;
use super::templates::{base_context, render};
use super::State;
use crate::core::{Client, CoreError, PersonalToken, ServiceChoice};
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::time::now;
use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::HashMap;

const TEMPLATE: &str = "personaltoken_form.html";

/// What the form shows again after a mistake.
#[derive(Serialize, Default)]
struct Values {
    name: String,
    service: String,
    /// Checked functions, per service id.
    functions: HashMap<String, Vec<String>>,
    expires: String,
    iprestriction: String,
}

fn form_context(
    state: &State,
    session: &CurrentSession,
    services: &[ServiceChoice],
    values: &Values,
    error: Option<(&str, &str)>,
) -> tera::Context {
    let max_days = state.core.personal_token_max_days();
    let today = now().date();
    let mut ctx = base_context(state, session, false);
    ctx.insert("services", services);
    ctx.insert("values", values);
    ctx.insert("max_days", &max_days);
    ctx.insert("min_date", &(today + chrono::Duration::days(1)).to_string());
    ctx.insert("max_date", &(today + chrono::Duration::days(max_days)).to_string());
    ctx.insert("error", &error.map(|e| e.1));
    ctx.insert("error_field", error.map_or("", |e| e.0));
    ctx
}

/// GET: the form; 403 for a person who may not create personal access tokens.
pub async fn form(state: State, session: CurrentSession) -> Result<HttpResponse, AppError> {
    let services = state.core.personal_token_choices(session.user.id).await?;
    let max_days = state.core.personal_token_max_days();
    let values = Values {
        service: services.first().map(|s| s.id.to_string()).unwrap_or_default(),
        expires: (now().date() + chrono::Duration::days(max_days.min(30))).to_string(),
        ..Default::default()
    };
    render(&state.templates, TEMPLATE, &form_context(&state, &session, &services, &values, None))
}

/// POST: creates the token and redirects to where it is shown once.
pub async fn submit(
    state: State,
    session: CurrentSession,
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let get = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
    let sesskey = get("sesskey");
    session.check_sesskey(Some(sesskey.as_str()))?;
    let services = state.core.personal_token_choices(session.user.id).await?;
    let mut values = Values {
        name: get("name"),
        service: get("service"),
        expires: get("expires"),
        iprestriction: get("iprestriction"),
        ..Default::default()
    };
    for (k, v) in &pairs {
        if let Some(service) = k.strip_prefix("functions-") {
            values.functions.entry(service.to_owned()).or_default().push(v.clone());
        }
    }
    let refuse = |field: &str, message: &str| -> Result<HttpResponse, AppError> {
        let ctx = form_context(&state, &session, &services, &values, Some((field, message)));
        let mut response = render(&state.templates, TEMPLATE, &ctx)?;
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
        Ok(response)
    };
    let ip_restriction = match IpRestriction::parse(&values.iprestriction) {
        Ok(r) => r,
        Err(e) => return refuse("iprestriction", &format!("IP restriction: {e}.")),
    };
    let valid_until = if values.expires.is_empty() {
        None
    } else {
        match NaiveDate::parse_from_str(&values.expires, "%Y-%m-%d") {
            Ok(d) => Some(d.and_hms_opt(23, 59, 59).expect("a valid time of day")),
            Err(_) => return refuse("expires", "Expires must be a date like 2027-01-31."),
        }
    };
    let request = PersonalToken {
        name: values.name.clone(),
        service_id: values.service.parse().ok(),
        functions: values.functions.get(&values.service).cloned().unwrap_or_default(),
        valid_until,
        ip_restriction,
    };
    match state.core.create_personal_token(session.user.id, request, &client).await {
        Ok(created) => super::newkey::redirect_to_shown_once(&state, created),
        Err(CoreError::InvalidField { field, message }) => refuse(field, &message),
        Err(CoreError::TokensDisabled(_)) => {
            refuse("service", "Web-service tokens are switched off on this site: no token can be made.")
        }
        Err(e) => Err(e.into()),
    }
}
