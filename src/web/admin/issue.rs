//! Issuing a web-service token for a user: service, name, IP restriction, expiry. Shown once.

use super::{field, form_pairs, AdminSession};
use crate::app::State;
use crate::domain::capability::Capability;
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::time::{exact, now};
use crate::error::AppError;
use crate::keys::ops::{self, Actor, KeyRequest, SecretKind};
use crate::keys::WEBSERVICE_TOKEN;
use crate::web::client::ClientInfo;
use crate::web::templates::render;
use actix_web::{web, HttpResponse};
use chrono::NaiveDate;
use std::collections::HashMap;

fn form_context(
    state: &State,
    admin: &AdminSession,
    services: &[crate::db::models::Service],
    values: &HashMap<&str, String>,
    error: Option<&str>,
) -> tera::Context {
    let mut ctx = admin.context(state);
    let list: Vec<(i64, String, bool)> = services.iter().map(|s| (s.id, s.name.clone(), s.enabled)).collect();
    ctx.insert("services", &list);
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
    let services = state.db.read(crate::db::services::all).await?;
    let mut values = HashMap::new();
    values.insert("username", query.get("username").cloned().unwrap_or_default());
    let default_until = (now() + chrono::Duration::days(30)).date();
    values.insert("validuntil", default_until.to_string());
    render(&state.templates, "admin_issue.html", &form_context(&state, &admin, &services, &values, None))
}

pub async fn submit(
    state: State,
    admin: AdminSession,
    client: ClientInfo,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    admin.require(Capability::IssueTokens)?;
    let pairs = form_pairs(&body);
    admin.session.check_sesskey(field(&pairs, "sesskey"))?;
    let services = state.db.read(crate::db::services::all).await?;
    let get = |n: &str| field(&pairs, n).unwrap_or("").trim().to_owned();
    let values: HashMap<&str, String> =
        ["username", "service", "name", "iprestriction", "validuntil"].into_iter().map(|n| (n, get(n))).collect();
    let refuse = |message: String| -> Result<HttpResponse, AppError> {
        let mut response = render(
            &state.templates,
            "admin_issue.html",
            &form_context(&state, &admin, &services, &values, Some(&message)),
        )?;
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
        Ok(response)
    };

    let username = values["username"].to_lowercase();
    let lookup = username.clone();
    let Some(user) = state.db.read(move |conn| crate::db::users::find_by_username(conn, &lookup)).await? else {
        return refuse(format!("There is no user “{username}”."));
    };
    if user.suspended {
        return refuse(format!("{} is suspended; a token for them would not work.", user.username));
    }
    let Some(service) = values["service"].parse::<i64>().ok().and_then(|id| services.iter().find(|s| s.id == id))
    else {
        return refuse("Choose a service.".into());
    };
    let ip_restriction = match IpRestriction::parse(&values["iprestriction"]) {
        Ok(r) => r,
        Err(e) => return refuse(format!("IP restriction: {e}.")),
    };
    let now = now();
    let valid_until = if values["validuntil"].is_empty() {
        None
    } else {
        match NaiveDate::parse_from_str(&values["validuntil"], "%Y-%m-%d") {
            Ok(d) => Some(d.and_hms_opt(23, 59, 59).expect("a valid time of day")),
            Err(_) => return refuse("Valid until must be a date like 2027-01-31.".into()),
        }
    };
    if valid_until.is_some_and(|v| v <= now) {
        return refuse("Valid until is in the past: a token must be valid for some time.".into());
    }
    let name = if values["name"].is_empty() {
        format!("Issued by {}", admin.session.user.username)
    } else {
        values["name"].chars().take(200).collect()
    };
    let request = KeyRequest {
        user_id: user.id,
        key_type: WEBSERVICE_TOKEN.into(),
        name: name.clone(),
        service_id: Some(service.id),
        ip_restriction,
        valid_until,
        secret: SecretKind::Token,
        ..Default::default()
    };
    let actor = Actor { user_id: Some(admin.session.user.id), ip: Some(client.ip_string()) };
    let issued = state.db.write(move |conn| ops::issue(conn, request, &actor, now)).await?;
    let mut ctx = admin.context(&state);
    ctx.insert("label", "web-service token");
    ctx.insert("what", &format!("Token “{name}” for {} ({})", user.username, service.name));
    ctx.insert("value", issued.secret.as_ref().map(|s| s.expose()).unwrap_or_default());
    ctx.insert("qr_svg", &Option::<String>::None);
    ctx.insert("expires", &valid_until.map(exact));
    render(&state.templates, "newkey.html", &ctx)
}
