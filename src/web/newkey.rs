//! Keys a person creates for themselves (the types that say how, in their `SelfService`):
//! named on a short form, created by a POST, and shown once on the page that POST redirects
//! to, so reloading it creates nothing. The secret crosses the redirect in a cookie that only
//! that page reads and that is cleared as the page shows it.

use super::error::AppError;
use super::session::CurrentSession;
use super::templates::{base_context, render};
use super::{redirect, State};
use crate::core::Client;
use crate::domain::time::exact;
use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

const SHOWN_ONCE_COOKIE: &str = "userkeys_newkey";
const PAGE: &str = "/user/newkey.php";

/// What the page after the redirect shows, carried in the cookie.
#[derive(Serialize, Deserialize)]
struct ShownOnce {
    id: i64,
    name: String,
    type_label: String,
    shown_as: String,
    value: String,
    qr_code: bool,
    expires: Option<String>,
}

#[derive(Deserialize)]
pub struct NewKeyQuery {
    #[serde(rename = "type", default)]
    key_type: String,
    created: Option<i64>,
}

/// GET: the form that names a new key, or (after creating one) the key, shown once.
pub async fn page(
    state: State,
    session: CurrentSession,
    req: HttpRequest,
    query: web::Query<NewKeyQuery>,
) -> Result<HttpResponse, AppError> {
    if let Some(id) = query.created {
        return shown_once(&state, &session, &req, id);
    }
    let key_type = state
        .core
        .registry()
        .get(&query.key_type)
        .filter(|t| t.self_service.is_some())
        .ok_or_else(|| AppError::BadRequest("That kind of key cannot be created here.".into()))?;
    let mut ctx = base_context(&state, &session, false);
    ctx.insert("type_id", &key_type.id);
    ctx.insert("type_label", &key_type.label);
    ctx.insert("description", &key_type.description);
    ctx.insert("default_name", &key_type.self_service.as_ref().map(|s| s.key_name).unwrap_or_default());
    render(&state.templates, "newkey_form.html", &ctx)
}

/// POST (from the keys page): creates the key and redirects to where it is shown once.
pub async fn create(
    state: &State,
    session: &CurrentSession,
    client: &Client,
    key_type: &str,
    name: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let created = state.core.create_own_key(session.user.id, key_type, name, client).await?;
    redirect_to_shown_once(state, created)
}

/// Redirects to the page that shows a key just created, once (its secret in a short-lived cookie
/// only that page reads).
pub fn redirect_to_shown_once(state: &State, created: crate::core::CreatedKey) -> Result<HttpResponse, AppError> {
    let shown = ShownOnce {
        id: created.id,
        name: created.name,
        type_label: created.type_label,
        shown_as: created.shown_as.to_owned(),
        value: created.value,
        qr_code: created.qr_code,
        expires: created.valid_until.map(exact),
    };
    let value = serde_json::to_string(&shown).map_err(|e| AppError::Internal(e.to_string()))?;
    let cookie = Cookie::build(SHOWN_ONCE_COOKIE, hex::encode(value))
        .path(PAGE)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.core.config().secure_cookies)
        .max_age(CookieAge::minutes(5))
        .finish();
    let mut response = redirect(&format!("{PAGE}?created={}", created.id));
    response.add_cookie(&cookie).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}

fn shown_once(state: &State, session: &CurrentSession, req: &HttpRequest, id: i64) -> Result<HttpResponse, AppError> {
    let shown: Option<ShownOnce> = req
        .cookie(SHOWN_ONCE_COOKIE)
        .and_then(|c| hex::decode(c.value()).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|s: &ShownOnce| s.id == id);
    let mut ctx = base_context(state, session, false);
    let Some(shown) = shown else {
        ctx.insert("gone", &true);
        return render(&state.templates, "newkey.html", &ctx);
    };
    let qr_svg = shown
        .qr_code
        .then(|| qrcode::QrCode::new(shown.value.as_bytes()).ok())
        .flatten()
        .map(|code| code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build());
    ctx.insert("gone", &false);
    ctx.insert("heading", &format!("Your new key: {}", shown.name));
    ctx.insert("label", &shown.type_label);
    ctx.insert("what", &shown.shown_as);
    ctx.insert("value", &shown.value);
    ctx.insert("qr_svg", &qr_svg);
    ctx.insert("expires", &shown.expires);
    let mut response = render(&state.templates, "newkey.html", &ctx)?;
    // Shown once: the cookie goes with this answer.
    let mut removal = Cookie::build(SHOWN_ONCE_COOKIE, "").path(PAGE).finish();
    removal.make_removal();
    response.add_cookie(&removal).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(response)
}
