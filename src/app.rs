//! Building and running the application: state, routes, background work, shutdown.

use crate::accounts::PasswordCheck;
use crate::config::Config;
use crate::db::Db;
use crate::keys::{KeyType, KeyTypeRegistry};
use crate::usage::UsageRecorder;
use crate::{moodle, web};
use actix_web::dev::Server;
use actix_web::{middleware, web as aw, App, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;

pub struct AppState {
    pub db: Db,
    pub registry: Arc<KeyTypeRegistry>,
    pub config: Arc<Config>,
    pub usage: Arc<UsageRecorder>,
    pub templates: Arc<tera::Tera>,
    pub passwords: Arc<PasswordCheck>,
    /// Validated tokens in memory (off only by `USERKEYS_TOKEN_CACHE=off`).
    pub token_cache: Option<Arc<crate::moodle::token_cache::TokenCache>>,
    /// The site's part of the site-info answer, serialised once.
    pub site_info: Arc<crate::moodle::site_info::SitePieces>,
}

pub type State = aw::Data<AppState>;

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
        crate::setup::seed_site(&db)?;
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

    /// Serves until the server is stopped (SIGINT/SIGTERM), then writes pending usage.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// As `run`, and also stops gracefully once `stop` completes (to embed the application, as
    /// the tests do): what is being answered is answered, then pending usage is written.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()> + 'static) -> anyhow::Result<()> {
        let (server, state) = self.start()?;
        let handle = server.handle();
        actix_web::rt::spawn(async move {
            stop.await;
            handle.stop(true).await;
        });
        let writer = crate::usage::UsageWriter::spawn(state.usage.clone(), state.db.clone())?;
        state.db.spawn_checkpointer()?;
        if state.token_cache.is_some() {
            let warm = state.clone();
            actix_web::rt::task::spawn_blocking(move || {
                // On PostgreSQL, once other instances' writes are heard: what is loaded before is dropped.
                if let Some(peers) = warm.db.peers() {
                    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while !peers.cache_usable() && std::time::Instant::now() < give_up {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
                if let Some(cache) = &warm.token_cache {
                    match cache.preload(&warm.db, &warm.registry, &warm.usage) {
                        Ok(n) => tracing::info!(tokens = n, "token cache warmed"),
                        Err(e) => tracing::warn!(error = %e, "warming the token cache failed"),
                    }
                }
            });
        }
        server.await?;
        let last = state.clone();
        actix_web::web::block(move || {
            writer.stop();
            last.usage.finish_blocking(&last.db)
        })
        .await??;
        Ok(())
    }

    fn start(self) -> anyhow::Result<(Server, State)> {
        let coherence = self.db.peers().cloned();
        let token_cache: Option<Arc<crate::moodle::token_cache::TokenCache>> = self
            .config
            .token_cache_enabled()
            .then(|| Arc::new(crate::moodle::token_cache::TokenCache::new(coherence.clone())));
        if let (Some(_), Some(peers)) = (&token_cache, coherence) {
            peers.spawn_listener(self.db.clone())?;
        }
        if let Some(cache) = &token_cache {
            let cache = cache.clone();
            self.db.on_invalidation(Arc::new(move |what| cache.invalidate(what)));
        }
        let site_info = Arc::new(crate::moodle::site_info::SitePieces::new(&self.config));
        let state = aw::Data::new(AppState {
            site_info,
            db: self.db,
            registry: Arc::new(self.registry),
            // Half the cores at most: validation keeps the other half during a sign-in burst.
            passwords: Arc::new(PasswordCheck::new(
                std::thread::available_parallelism().map(|n| n.get() / 2).unwrap_or(1),
            )),
            config: Arc::new(self.config),
            usage: Arc::new(UsageRecorder::default()),
            token_cache,
            templates: Arc::new(self.templates),
        });
        let data = state.clone();
        let request_logging =
            tracing::level_filters::LevelFilter::current() >= tracing::level_filters::LevelFilter::INFO;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
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
                .configure(web::routes)
                .configure(moodle::routes)
        })
        .shutdown_timeout(10)
        // Blocking work is database calls (bounded by the pool) and little else; a small pool of
        // threads keeps memory flat under load.
        .worker_max_blocking_threads(state.config.db_pool_size.max(2) as usize)
        .listen(self.listener)?;
        if let Some(workers) = state.config.workers {
            server = server.workers(workers);
        }
        Ok((server.run(), state))
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
