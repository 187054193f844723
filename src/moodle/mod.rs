//! Moodle's protocol: login/token.php, the REST web-service server and its functions, the
//! no-login AJAX service, auto-login, and the feeds opened by private keys.

pub mod auth;
mod autologin;
pub mod error;
mod feeds;
pub mod functions;
mod nologin;
pub mod output;
pub mod params;
mod private_keys;
mod qrlogin;
pub mod server;
pub mod site_info;
pub mod token;
pub mod token_cache;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login/token.php", web::route().to(token::token))
        .route("/webservice/rest/server.php", web::route().to(server::rest))
        .route("/lib/ajax/service-nologin.php", web::post().to(nologin::service_nologin))
        .route("/admin/tool/mobile/autologin.php", web::route().to(autologin::autologin))
        .route("/rss/file.php/{path:.*}", web::get().to(feeds::rss))
        .route("/calendar/export_execute.php", web::get().to(feeds::calendar))
        // The benchmark's ceiling: the same server doing no work.
        .route("/ping", web::get().to(|| async { "pong" }));
}
