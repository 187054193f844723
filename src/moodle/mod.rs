//! Moodle's protocol as its clients speak it: login/token.php, the REST web-service server and
//! its functions, the no-login AJAX service, and the feeds opened by private keys. Each handler
//! parses Moodle's parameters, calls the core, and answers in Moodle's format.

pub mod auth;
mod batch;
pub mod call;
mod devices;
pub mod error;
mod feeds;
pub mod functions;
pub mod mobile;
mod my_keys;
mod nologin;
pub mod output;
pub mod params;
mod qrlogin;
pub mod server;
pub mod site_info;
pub mod token;
mod userkeys_admin;

use crate::core::Core;
use actix_web::web;
use std::sync::Arc;

/// What the protocol needs: the core, and the site's part of the site-info answer.
pub struct MoodleState {
    pub core: Arc<Core>,
    pub site_info: site_info::SitePieces,
}

impl MoodleState {
    pub fn new(core: Arc<Core>) -> Self {
        let site_info = site_info::SitePieces::new(core.config());
        MoodleState { core, site_info }
    }
}

pub type State = web::Data<MoodleState>;

/// The protocol's routes, the web-service server first: actix tries routes in the order they
/// are added, and that one takes nearly every request of a busy site. The benchmark's no-op
/// (`bench_endpoints`) comes right after it, so that it is routed at the same cost.
pub fn routes(cfg: &mut web::ServiceConfig, bench_endpoints: bool) {
    cfg.route("/webservice/rest/server.php", web::route().to(server::rest));
    if bench_endpoints {
        bench_routes(cfg);
    }
    cfg.route("/login/token.php", web::route().to(token::token))
        .route("/lib/ajax/service.php", web::post().to(nologin::service))
        .route("/lib/ajax/service-nologin.php", web::route().to(nologin::service))
        .route("/theme/image.php/{path:.*}", web::get().to(user_picture))
        .route("/rss/file.php/{path:.*}", web::get().to(feeds::rss))
        .route("/calendar/export_execute.php", web::get().to(feeds::calendar));
}

/// The benchmark's ceilings, served only when the site is started for a benchmark
/// (`USERKEYS_BENCH_ENDPOINTS`): the same server doing no work.
fn bench_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ping", web::post().to(shaped_ping))
        .route("/ping", web::get().to(|| async { "pong" }))
        .route("/bench/token-cache", web::get().to(token_cache_stats))
        .route("/bench/usage", web::get().to(usage_stats));
}

/// For the benchmark: the token cache's hits, misses, size and budget.
async fn token_cache_stats(state: State) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(state.core.token_cache_stats())
}

/// For the benchmark: what the usage recorder holds in memory.
async fn usage_stats(state: State) -> actix_web::HttpResponse {
    match state.core.usage_stats().await {
        Ok(stats) => actix_web::HttpResponse::Ok().json(stats),
        Err(e) => actix_web::HttpResponse::ServiceUnavailable().body(e.to_string()),
    }
}

/// The default user picture, where Moodle's theme serves it (`userpictureurl` in site info).
async fn user_picture() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "public, max-age=86400"))
        .body(include_str!("../../static/user.svg"))
}

/// Largest answer `shaped_ping` gives.
const MAX_SHAPED_ANSWER: usize = 64 * 1024;

/// For the benchmark: no work, on a request and answer shaped like a web-service call. Reads
/// the form body as the REST server does and answers a JSON string of `?bytes=N` bytes (at
/// most 64 KiB) with the REST server's headers, so that what HTTP costs for that shape can be
/// told apart from what validating a token costs.
async fn shaped_ping(req: actix_web::HttpRequest, payload: web::Payload) -> actix_web::HttpResponse {
    // read_params merges the query string with the body, as for a web-service call.
    let (bytes, format) = match params::read_params(&req, payload).await {
        Ok(params) => (
            params.text("bytes").ok().flatten().and_then(|b| b.parse::<usize>().ok()),
            output::Format::from_param(params.text("moodlewsrestformat").ok().flatten()),
        ),
        Err(_) => (None, output::Format::Json),
    };
    let bytes = bytes.unwrap_or(4).clamp(2, MAX_SHAPED_ANSWER);
    output::success(format, call::Reply::Json(format!("\"{}\"", "x".repeat(bytes - 2))))
}
