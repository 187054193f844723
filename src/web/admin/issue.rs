//! Issuing a web-service token for a user: service, name, IP restriction, expiry. Shown once.

use super::{field, AdminSession};
use crate::core::{Capability, Client, CoreError, IssueToken};
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::time::{exact, now};
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::State;
use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use std::collections::HashMap;

fn form_context(
    state: &State,
    admin: &AdminSession,
    services: &[(i64, String, bool)],
    values: &HashMap<&str, String>,
    error: Option<&str>,
) -> tera::Context {
    let mut ctx = admin.context(state);
    ctx.insert("nav", "issue");
    ctx.insert("services", services);
    ctx.insert("values", values);
    ctx.insert("error", &error);
    ctx
}

pub async fn form(
    state: State,
    admin: AdminSession,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, AppError> {
    admin.require(Capability::IssueTokens)?;
    let services = state.core.services().await?;
    let mut values = HashMap::new();
    values.insert("username", query.get("username").cloned().unwrap_or_default());
    let default_until = (now() + chrono::Duration::days(30)).date();
    values.insert("validuntil", default_until.to_string());
    render(&state.templates, "admin_issue.html", &form_context(&state, &admin, &services, &values, None))
}

pub async fn submit(
    state: State,
    admin: AdminSession,
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let pairs = admin.posted_form(Capability::IssueTokens, &body)?;
    let services = state.core.services().await?;
    let get = |n: &str| field(&pairs, n).unwrap_or("").trim().to_owned();
    let values: HashMap<&str, String> =
        ["username", "service", "name", "iprestriction", "validuntil"].into_iter().map(|n| (n, get(n))).collect();
    // The message is shown above the form and tied to the field it is about.
    let refuse = |field: &str, message: String| -> Result<HttpResponse, AppError> {
        let mut ctx = form_context(&state, &admin, &services, &values, Some(&message));
        ctx.insert("error_field", field);
        let mut response = render(&state.templates, "admin_issue.html", &ctx)?;
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
        Ok(response)
    };

    let Some(service_id) = values["service"].parse::<i64>().ok().filter(|id| services.iter().any(|s| s.0 == *id))
    else {
        return refuse("service", "Choose a service.".into());
    };
    let ip_restriction = match IpRestriction::parse(&values["iprestriction"]) {
        Ok(r) => r,
        Err(e) => return refuse("iprestriction", format!("IP restriction: {e}.")),
    };
    let valid_until = if values["validuntil"].is_empty() {
        None
    } else {
        match NaiveDate::parse_from_str(&values["validuntil"], "%Y-%m-%d") {
            Ok(d) => Some(d.and_hms_opt(23, 59, 59).expect("a valid time of day")),
            Err(_) => return refuse("validuntil", "Valid until must be a date like 2027-01-31.".into()),
        }
    };
    let name = if values["name"].is_empty() {
        format!("Issued by {}", admin.session.user.username)
    } else {
        values["name"].chars().take(200).collect()
    };
    let request = IssueToken {
        username: values["username"].clone(),
        service_id,
        name: name.clone(),
        ip_restriction,
        valid_until,
    };
    let (username, service_name, token) = match state.core.issue_token(admin.session.user.id, request, &client).await {
        Ok(issued) => issued,
        Err(CoreError::Invalid(message)) => {
            let lower = message.to_lowercase();
            let field = if lower.contains("valid until") {
                "validuntil"
            } else if lower.contains("service") {
                "service"
            } else if lower.contains("user") {
                "username"
            } else {
                ""
            };
            return refuse(field, message);
        }
        Err(e) => return Err(e.into()),
    };
    let mut ctx = admin.context(&state);
    ctx.insert("label", "web-service token");
    ctx.insert("heading", &format!("New web-service token for {username}"));
    ctx.insert("what", &format!("Token “{name}” for {username} ({service_name})"));
    ctx.insert("value", &token);
    ctx.insert("qr_svg", &Option::<String>::None);
    ctx.insert("expires", &valid_until.map(exact));
    ctx.insert("back_url", &format!("/admin/userkeys/index.php?user={}", username));
    ctx.insert("back_label", &format!("Back to {username}'s keys"));
    render(&state.templates, "newkey.html", &ctx)
}
