//! Building and running the application: the core, the two transports' state, the routes,
//! background work, shutdown. The only place that knows every layer.

use crate::config::Config;
use crate::core::Core;
use crate::db::Db;
use crate::keys::{KeyType, KeyTypeRegistry};
use crate::moodle::MoodleState;
use crate::web::WebState;
use crate::{moodle, web};
use actix_web::dev::Server;
use actix_web::{middleware, web as aw, App, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;

/// The application before it serves: open the database, register key types, then `run`.
pub struct Application {
    config: Config,
    registry: KeyTypeRegistry,
    db: Db,
    templates: tera::Tera,
    listener: TcpListener,
}

impl Application {
    /// Opens (creating and migrating) the database and binds the listener.
    pub fn build(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect(&config.database_url, config.db_pool_size)?;
        crate::setup::seed_site(
            &db,
            &moodle::functions::mobile_app_functions(),
            &moodle::functions::admin_service_functions(),
        )?;
        let listener =
            TcpListener::bind(&config.bind).map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
        let templates = web::templates::load()?;
        Ok(Application { config, registry: KeyTypeRegistry::with_core_types(), db, templates, listener })
    }

    /// Registers a plugin's key type before the server starts. Unless the site says new types
    /// start enabled, it starts disabled until an admin turns it on.
    pub fn register_key_type(&mut self, key_type: KeyType) -> anyhow::Result<()> {
        let key_type = if self.config.new_key_types_enabled { key_type } else { key_type.disabled_by_default() };
        self.registry.register(key_type)?;
        Ok(())
    }

    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The key types registered so far.
    pub fn registry(&self) -> &KeyTypeRegistry {
        &self.registry
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM), then writes pending usage.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// As `run`, and also stops gracefully once `stop` completes (to embed the application, as
    /// the tests do): what is being answered is answered, then pending usage is written.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()> + 'static) -> anyhow::Result<()> {
        let (server, core) = self.start()?;
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            stop.await;
            handle.stop(true).await;
        });
        let background = core.start_background()?;
        server.await?;
        background.finish().await
    }

    fn start(self) -> anyhow::Result<(Server, Arc<Core>)> {
        let core = Arc::new(Core::new(self.db, self.registry, self.config)?);
        let config = core.config().clone();
        let core_data = aw::Data::from(core.clone());
        let web_state = aw::Data::new(WebState { core: core.clone(), templates: self.templates });
        let moodle_state = aw::Data::new(MoodleState::new(core.clone()));
        let bench_endpoints = config.bench_endpoints;
        let request_logging =
            tracing::level_filters::LevelFilter::current() >= tracing::level_filters::LevelFilter::INFO;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(core_data.clone())
                .app_data(web_state.clone())
                .app_data(moodle_state.clone())
                .app_data(aw::FormConfig::default().limit(64 * 1024))
                .app_data(aw::PayloadConfig::default().limit(1024 * 1024))
                .wrap(
                    middleware::DefaultHeaders::new()
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "same-origin"))
                        .add(("X-Frame-Options", "DENY")),
                )
                // Never the query string or a key in the path: tokens and passwords travel there.
                // Left out when request logging is off, so the hot path formats nothing.
                .wrap(middleware::Condition::new(
                    request_logging,
                    middleware::Logger::new("%a \"%{path}xi\" %s %Dms")
                        .custom_request_replace("path", |req| loggable_path(req.method().as_str(), req.path()))
                        .exclude("/healthz"),
                ))
                // The protocol first: its web-service server takes most requests.
                .configure(|cfg| moodle::routes(cfg, bench_endpoints))
                .configure(web::routes)
                .default_service(aw::to(web::not_found))
        })
        .shutdown_timeout(10)
        // Blocking work is database calls (bounded by the pool) and little else; a small pool of
        // threads keeps memory flat under load.
        .worker_max_blocking_threads(config.db_pool_size.max(2) as usize)
        .listen(self.listener)?;
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        Ok((server.run(), core))
    }
}

/// The method and path of a request as it may be logged: query strings are dropped by the
/// caller, and paths that carry a key (RSS feeds) are cut before it.
fn loggable_path(method: &str, path: &str) -> String {
    match path.strip_prefix("/rss/file.php/") {
        Some(_) => format!("{method} /rss/file.php/…"),
        None => format!("{method} {path}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_paths_hold_no_keys() {
        assert_eq!(super::loggable_path("GET", "/rss/file.php/1/0123abcd/user/2/rss.xml"), "GET /rss/file.php/…");
        assert_eq!(super::loggable_path("POST", "/login/token.php"), "POST /login/token.php");
    }
}
