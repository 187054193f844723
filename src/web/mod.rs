//! The HTML side: sign-in, the self-service keys page, static files, the health check.

mod admin;
pub mod client;
pub mod login;
mod managetoken;
mod newkey;
pub mod session;
pub mod switches;
pub mod templates;

use crate::app::State;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/healthz", web::get().to(health))
        .route("/static/style.css", web::get().to(stylesheet))
        .route("/login/index.php", web::get().to(login::form))
        .route("/login/index.php", web::post().to(login::submit))
        .route("/login/logout.php", web::get().to(login::confirm_logout))
        .route("/login/logout.php", web::post().to(login::logout))
        .route("/user/managetoken.php", web::get().to(managetoken::page))
        .route("/user/managetoken.php", web::post().to(managetoken::act))
        .configure(admin::routes);
}

async fn home(session: Option<session::CurrentSession>) -> HttpResponse {
    let to = if session.is_some() { "/user/managetoken.php" } else { "/login/index.php" };
    HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish()
}

/// 200 "ok" when the database answers, 503 otherwise: for load balancers.
async fn health(state: State) -> HttpResponse {
    match state.db.read(crate::db::ping).await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ok"),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            HttpResponse::ServiceUnavailable().content_type("text/plain").body("database unavailable")
        }
    }
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/style.css"))
}
