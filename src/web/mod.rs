//! The HTML side: sign-in, the self-service keys page, the admin pages, the two pages the
//! Moodle app opens in a browser (auto-login and launch), static files, the health check.
//! Each handler parses the request, makes one call to the core and renders a page.

mod admin;
mod autologin;
pub(crate) mod chart;
pub mod error;
pub(crate) mod flash;
mod headers;
mod launch;
mod login;
mod managetoken;
mod newkey;
mod password;
mod personal_token;
mod reset;
pub mod session;
pub mod templates;
mod wording;

use crate::core::Core;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use std::sync::Arc;

/// What the pages need: the core, and the templates they are drawn with.
pub struct WebState {
    pub core: Arc<Core>,
    pub templates: tera::Tera,
}

pub type State = web::Data<WebState>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/healthz", web::get().to(health))
        .route("/healthz", web::head().to(health))
        .route("/static/style.css", web::get().to(stylesheet))
        .route("/login/index.php", web::get().to(login::form))
        .route("/login/index.php", web::post().to(login::submit))
        .route("/login/forgot_password.php", web::get().to(reset::forgot_form))
        .route("/login/forgot_password.php", web::post().to(reset::forgot_submit))
        .route("/login/reset_password.php", web::get().to(reset::reset_form))
        .route("/login/reset_password.php", web::post().to(reset::reset_submit))
        .route("/login/logout.php", web::get().to(login::confirm_logout))
        .route("/login/logout.php", web::post().to(login::logout))
        .route("/user/managetoken.php", web::get().to(managetoken::page))
        .route("/user/managetoken.php", web::post().to(managetoken::act))
        .route("/user/newkey.php", web::get().to(newkey::page))
        .route("/user/personaltoken.php", web::get().to(personal_token::form))
        .route("/user/personaltoken.php", web::post().to(personal_token::submit))
        .route("/static/copy.js", web::get().to(copy_script))
        .route("/static/tz.js", web::get().to(zone_script))
        .route("/user/password.php", web::get().to(password::form))
        .route("/user/password.php", web::post().to(password::submit))
        .route("/admin/tool/mobile/launch.php", web::get().to(launch::launch))
        .route("/admin/tool/mobile/autologin.php", web::route().to(autologin::autologin))
        .configure(admin::routes);
}

async fn home(session: Option<session::CurrentSession>) -> HttpResponse {
    let to = if session.is_some() { "/user/managetoken.php" } else { "/login/index.php" };
    redirect(to)
}

/// 200 "ok" when the database answers, 503 otherwise: for load balancers.
async fn health(state: State) -> HttpResponse {
    if state.core.healthy().await {
        HttpResponse::Ok().content_type("text/plain").body("ok")
    } else {
        HttpResponse::ServiceUnavailable().content_type("text/plain").body("database unavailable")
    }
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/style.css"))
}

/// Any address the site does not have: a page that says so, with the way back.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&error::AppError::NotFound)
}

async fn copy_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/copy.js"))
}

async fn zone_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/tz.js"))
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to.to_owned())).finish()
}
