//! Keys a person creates for themselves on the keys page: an RSS feed key, a calendar
//! subscription key, a QR code that signs the mobile app in. The secret is shown once.

use super::client::ClientInfo;
use super::managetoken::base_context;
use super::session::CurrentSession;
use super::templates::render;
use crate::app::State;
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::time::{exact, now};
use crate::error::AppError;
use crate::keys::ops::{self, Actor, KeyRequest, SecretKind};
use crate::keys::{CALENDAR_EXPORT, QR_LOGIN, RSS};
use actix_web::HttpResponse;
use chrono::Duration;

/// A QR-login key lives 10 minutes (Moodle's default qrkeyttl) and only from this address.
const QR_KEY_MINUTES: i64 = 10;

pub fn creatable(key_type: &str) -> bool {
    [RSS, CALENDAR_EXPORT, QR_LOGIN].contains(&key_type)
}

pub async fn create(
    state: &State,
    session: &CurrentSession,
    client: &ClientInfo,
    key_type: &str,
) -> Result<HttpResponse, AppError> {
    let label = state
        .registry
        .get(key_type)
        .filter(|t| creatable(&t.id))
        .map(|t| t.label.clone())
        .ok_or_else(|| AppError::BadRequest("That kind of key cannot be created here.".into()))?;
    let now = now();
    let (name, valid_until, ip_restriction) = match key_type {
        QR_LOGIN => (
            "QR code for the mobile app".to_owned(),
            Some(now + Duration::minutes(QR_KEY_MINUTES)),
            IpRestriction::parse(&client.ip_string()).ok().flatten(),
        ),
        RSS => ("RSS feed key".to_owned(), None, None),
        _ => ("Calendar subscription".to_owned(), None, None),
    };
    let user_id = session.user.id;
    let request = KeyRequest {
        user_id,
        key_type: key_type.to_owned(),
        name,
        valid_until,
        ip_restriction,
        secret: SecretKind::Token,
        ..Default::default()
    };
    let actor = Actor { user_id: Some(user_id), ip: Some(client.ip_string()) };
    let issued = state.db.write(move |conn| ops::issue(conn, request, &actor, now)).await?;
    let secret = issued.secret.ok_or_else(|| AppError::Internal("key issued without a secret".into()))?;
    let root = state.config.site_root();
    let (what, value) = match key_type {
        RSS => ("Feed address", format!("{root}/rss/file.php/1/{}/user/{user_id}/rss.xml", secret.expose())),
        QR_LOGIN => ("QR code content", format!("moodlemobile://{root}?qrlogin={}&userid={user_id}", secret.expose())),
        _ => (
            "Calendar subscription address",
            format!(
                "{root}/calendar/export_execute.php?userid={user_id}&authtoken={}&preset_what=all&preset_time=recentupcoming",
                secret.expose()
            ),
        ),
    };
    let qr_svg = (key_type == QR_LOGIN)
        .then(|| qrcode::QrCode::new(value.as_bytes()).ok())
        .flatten()
        .map(|code| code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build());
    let mut ctx = base_context(state, session, false);
    ctx.insert("label", &label);
    ctx.insert("what", what);
    ctx.insert("value", &value);
    ctx.insert("qr_svg", &qr_svg);
    ctx.insert("expires", &valid_until.map(exact));
    render(&state.templates, "newkey.html", &ctx)
}
