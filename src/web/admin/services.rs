//! Services and key types on and off, site-wide. Keys of a disabled service or type are refused
//! at validation and shown as disabled; enabling restores them without re-issuing.

use super::{field, form_pairs, AdminSession};
use crate::core::{Capability, Client, SwitchTarget};
use crate::web::error::AppError;
use crate::web::templates::render;
use crate::web::{redirect, State};
use actix_web::{web, HttpResponse};

pub async fn page(state: State, admin: AdminSession) -> Result<HttpResponse, AppError> {
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
    ctx.insert("services", &services);
    ctx.insert("types", &types);
    render(&state.templates, "admin_services.html", &ctx)
}

pub async fn toggle(
    state: State,
    admin: AdminSession,
    client: Client,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ManageServices)?;
    let pairs = form_pairs(&body);
    admin.session.check_sesskey(field(&pairs, "sesskey"))?;
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
    state.core.set_switch(admin.session.user.id, target, enable, &client).await?;
    Ok(redirect("/admin/userkeys/services.php"))
}
