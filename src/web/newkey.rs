//! Keys a person creates for themselves on the keys page (the types that say how, in their
//! `SelfService`): shown once, with a QR code where the type asks for one.

use super::error::AppError;
use super::session::CurrentSession;
use super::templates::{base_context, render};
use super::State;
use crate::core::Client;
use crate::domain::time::exact;
use actix_web::HttpResponse;

pub async fn create(
    state: &State,
    session: &CurrentSession,
    client: &Client,
    key_type: &str,
) -> Result<HttpResponse, AppError> {
    let created = state.core.create_own_key(session.user.id, key_type, client).await?;
    let qr_svg = created
        .qr_code
        .then(|| qrcode::QrCode::new(created.value.as_bytes()).ok())
        .flatten()
        .map(|code| code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build());
    let mut ctx = base_context(state, session, false);
    ctx.insert("label", &created.type_label);
    ctx.insert("what", created.shown_as);
    ctx.insert("value", &created.value);
    ctx.insert("qr_svg", &qr_svg);
    ctx.insert("expires", &created.valid_until.map(exact));
    render(&state.templates, "newkey.html", &ctx)
}
