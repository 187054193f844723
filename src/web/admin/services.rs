//! Services and key types on and off, site-wide. Keys of a disabled service or type are refused
//! at validation and shown as disabled; enabling restores them without re-issuing.

use super::keys::load_switches;
use super::{field, form_pairs, AdminSession};
use crate::app::State;
use crate::db::models::NewAuditEntry;
use crate::domain::capability::Capability;
use crate::domain::time::now;
use crate::error::AppError;
use crate::keys::WEB_SESSION;
use crate::web::client::ClientInfo;
use crate::web::templates::render;
use actix_web::{web, HttpResponse};

pub async fn page(state: State, admin: AdminSession) -> Result<HttpResponse, AppError> {
    admin.require(Capability::ManageServices)?;
    let services = state.db.read(crate::db::services::all).await?;
    let switches = load_switches(&state).await?;
    let mut ctx = admin.context(&state);
    let services: Vec<serde_json::Value> = services
        .iter()
        .map(|s| serde_json::json!({"id": s.id, "name": s.name, "shortname": s.shortname, "enabled": s.enabled}))
        .collect();
    let types: Vec<serde_json::Value> = state
        .registry
        .all()
        .map(|t| {
            serde_json::json!({
                "id": t.id, "label": t.label, "visible": t.visible,
                "enabled": switches.type_enabled(&state.registry, &t.id),
                "locked": t.id == WEB_SESSION,
            })
        })
        .collect();
    ctx.insert("services", &services);
    ctx.insert("types", &types);
    render(&state.templates, "admin_services.html", &ctx)
}

pub async fn toggle(
    state: State,
    admin: AdminSession,
    client: ClientInfo,
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
    let (action, target) = match (field(&pairs, "service"), field(&pairs, "type")) {
        (Some(service), None) => {
            let id: i64 = service.trim().parse().map_err(|_| AppError::BadRequest("Choose a service.".into()))?;
            let found = state.db.read(move |conn| crate::db::services::find(conn, id)).await?;
            let service = found.ok_or(AppError::NotFound)?;
            (Toggle::Service(service.id), service.shortname)
        }
        (None, Some(key_type)) => {
            let t = state
                .registry
                .get(key_type)
                .ok_or_else(|| AppError::BadRequest("There is no such key type.".into()))?;
            if t.id == WEB_SESSION {
                return Err(AppError::BadRequest("Web sessions cannot be disabled: nobody could sign in.".into()));
            }
            (Toggle::KeyType(t.id.clone()), t.id.clone())
        }
        _ => return Err(AppError::BadRequest("Choose a service or a key type.".into())),
    };
    let entry = NewAuditEntry {
        at: now(),
        action: format!("{}_{}", action.noun(), if enable { "enabled" } else { "disabled" }),
        actor_id: Some(admin.session.user.id),
        key_type: Some(target),
        ip: Some(client.ip_string()),
        ..Default::default()
    };
    state
        .db
        .write(move |conn| {
            match &action {
                Toggle::Service(id) => {
                    crate::db::services::set_enabled(conn, *id, enable)?;
                }
                Toggle::KeyType(t) => crate::db::key_types::set_enabled(conn, t, enable)?,
            }
            crate::db::audit::append(conn, &entry)
        })
        .await?;
    Ok(crate::web::login::redirect("/admin/userkeys/services.php"))
}

enum Toggle {
    Service(i64),
    KeyType(String),
}

impl Toggle {
    fn noun(&self) -> &'static str {
        match self {
            Toggle::Service(_) => "service",
            Toggle::KeyType(_) => "key_type",
        }
    }
}
