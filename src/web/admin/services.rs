//! Services and key types on and off, site-wide. Keys of a disabled service or type are refused
//! at validation and shown as disabled; enabling restores them without re-issuing.

use super::{field, AdminSession};
use crate::core::{Capability, Client, SwitchTarget};
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::{redirect, State};
use actix_web::{web, HttpResponse};

#[derive(serde::Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

pub async fn page(state: State, admin: AdminSession, query: web::Query<DoneQuery>) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ManageServices)?;
    let switches = state.core.switches().await?;
    let services: Vec<serde_json::Value> = switches
        .services
        .iter()
        .map(|s| serde_json::json!({"id": s.id, "name": s.name, "shortname": s.detail, "enabled": s.enabled}))
        .collect();
    let types: Vec<serde_json::Value> = switches
        .types
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id, "label": t.name, "visible": t.visible, "enabled": t.enabled, "locked": t.locked,
            })
        })
        .collect();
    let mut ctx = admin.context(&state);
    ctx.insert("nav", "services");
    ctx.insert("services", &services);
    ctx.insert("types", &types);
    ctx.insert("done", &query.done.as_deref().map(|d| d.chars().take(300).collect::<String>()));
    render(&state.templates, "admin_services.html", &ctx)
}

pub async fn toggle(
    state: State,
    admin: AdminSession,
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let pairs = admin.posted_form(Capability::ManageServices, &body)?;
    let enable = match field(&pairs, "enable") {
        Some("1") => true,
        Some("0") => false,
        _ => return Err(AppError::BadRequest("Say whether to enable or disable.".into())),
    };
    let target = match (field(&pairs, "service"), field(&pairs, "type")) {
        (Some(service), None) => {
            SwitchTarget::Service(service.trim().parse().map_err(|_| AppError::BadRequest("Choose a service.".into()))?)
        }
        (None, Some(key_type)) => SwitchTarget::KeyType(key_type.to_owned()),
        _ => return Err(AppError::BadRequest("Choose a service or a key type.".into())),
    };
    let (name, keys, people) = state.core.switch_impact(&target).await?;
    // Switching off stops keys for everyone at once: say how many first, and act on a second post.
    if !enable && field(&pairs, "confirm") != Some("1") {
        let mut ctx = admin.context(&state);
        ctx.insert("title", "Please confirm");
        let question = if keys == 0 {
            format!("Disable {name}? No active key uses it now. While it is off, none can be used.")
        } else {
            format!(
                "Disable {name}? {} stop{} working at once, for everyone who uses {}. Enabling it again restores them.",
                plural(keys, "active key"),
                if keys == 1 { "s" } else { "" },
                if people == 1 { "it (1 person)".to_owned() } else { format!("them ({people} people)") },
            )
        };
        ctx.insert("question", &question);
        ctx.insert("action_url", "/admin/userkeys/services.php");
        let mut fields: Vec<(&str, String)> = pairs
            .iter()
            .filter(|(k, _)| ["service", "type", "enable"].contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        fields.push(("confirm", "1".into()));
        ctx.insert("fields", &fields);
        ctx.insert("confirm_label", &format!("Disable {name}"));
        ctx.insert("cancel_url", "/admin/userkeys/services.php");
        return render(&state.templates, "confirm.html", &ctx);
    }
    state.core.set_switch(admin.session.user.id, target, enable, &client).await?;
    let done = if enable {
        format!("{name} is enabled: {} work{} again.", plural(keys, "key"), if keys == 1 { "s" } else { "" })
    } else {
        format!("{name} is disabled: {} stopped working.", plural(keys, "key"))
    };
    let query = serde_urlencoded::to_string([("done", done)]).unwrap_or_default();
    Ok(redirect(&format!("/admin/userkeys/services.php?{query}")))
}

fn plural(n: i64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
