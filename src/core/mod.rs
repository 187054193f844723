//! The core: everything a request asks of the site — sign in, validate a key, issue, revoke,
//! force logout, device tokens, the lists a page shows — with no HTTP in it. A transport
//! (`web`, `moodle`) parses a request, makes one call here and renders the answer; every
//! transaction begins and ends in here.
//!
//! Layers, each using only those after it: transports → core → keys, usage, accounts → db →
//! domain.

mod accounts;
mod admin;
mod client;
mod client_alerts;
mod devices;
mod error;
mod listings;
mod own_keys;
mod password_reset;
mod personal_tokens;
mod scripted;
mod sessions;
mod sign_in;
mod token_cache;
mod unused_keys;
mod valid_key;
mod validate;

pub use accounts::MIN_PASSWORD_CHARS;
pub use admin::{IssueToken, Switch, SwitchTarget, Switches};
pub use client::Client;
pub use client_alerts::{ClientAlert, MAIL_EVERY_MINUTES};
pub use devices::{DeviceRegistration, GrantedToken, AUTOLOGIN_MIN_MINUTES_BETWEEN, MOBILE_SERVICE};
pub use error::{CoreError, Refusal, SignInRefusal};
pub use listings::{AuditPage, KeyEntry, KeyPage, KeyState, OwnKeys, PersonKeys};
pub use own_keys::{CheckedRevocation, CreatedKey, OwnRevocation, MAX_KEY_NAME_CHARS};
pub use personal_tokens::{PersonalToken, ServiceChoice, PERSONAL_TOKEN_LABEL};
pub use scripted::{TokenActor, ADMIN_SERVICE, MAX_KEYS_PER_CALL};
pub use sessions::Session;
pub use sign_in::Channel;
pub use token_cache::CacheStats;
pub use unused_keys::{UnusedWalks, EXPIRED_UNUSED};
pub use valid_key::{KeyOwner, ServiceAccess, ValidKey};
pub use validate::Expected;

// The vocabulary of searches, as the pages speak it.
pub use crate::db::audit::AuditFilter;
pub use crate::db::key_search::{KeyFilter, KeySort};
pub use crate::db::models::User;
pub use crate::db::DbError;
pub use crate::domain::capability::Capability;
pub use crate::keys::device_tokens::Device;

use crate::accounts::PasswordCheck;
use crate::config::Config;
use crate::db::Db;
use crate::keys::policy::SiteLifetimes;
use crate::keys::KeyTypeRegistry;
use crate::usage::{UsageRecorder, UsageWriter};
use std::sync::Arc;
use token_cache::TokenCache;

pub type CoreResult<T> = Result<T, CoreError>;

/// The site: its database, key types, settings, usage recorder, password checker and the
/// in-memory cache of validated keys.
pub struct Core {
    db: Db,
    registry: Arc<KeyTypeRegistry>,
    config: Arc<Config>,
    usage: Arc<UsageRecorder>,
    passwords: PasswordCheck,
    cache: Option<Arc<TokenCache>>,
    mailer: Arc<crate::mail::Mailer>,
}

/// For the benchmark: usage held in memory, and written but not yet folded.
#[derive(Debug, serde::Serialize)]
pub struct UsageStats {
    #[serde(flatten)]
    pub recorder: crate::usage::RecorderStats,
    /// What waits to be folded.
    pub unfolded: crate::db::usage::Backlog,
}

impl Core {
    pub fn new(db: Db, registry: KeyTypeRegistry, config: Config) -> anyhow::Result<Self> {
        let cache = config
            .token_cache_enabled()
            .then(|| Arc::new(TokenCache::new(db.peers().cloned(), config.token_cache_mb << 20)));
        if let (Some(_), Some(peers)) = (&cache, db.peers()) {
            peers.clone().spawn_listener(db.clone())?;
        }
        if let Some(cache) = &cache {
            let cache = cache.clone();
            db.on_invalidation(Arc::new(move |what| cache.invalidate(what)));
        }
        let mailer = Arc::new(crate::mail::Mailer::new(config.smtp_url.as_deref(), &config.mail_from)?);
        // A single-use key is revoked by its one use: it has no second client to tell of.
        let alerting = registry
            .all()
            .filter(|t| t.policy.new_clients == crate::keys::policy::NewClients::Alert && !t.policy.single_use)
            .map(|t| t.id.clone())
            .collect();
        for (key_type, _) in &config.expire_unused_days.0 {
            if registry.get(key_type).is_none() {
                tracing::warn!(key_type, "USERKEYS_EXPIRE_UNUSED_DAYS names a key type nobody registered");
            }
        }
        Ok(Core {
            mailer,
            db,
            registry: Arc::new(registry),
            config: Arc::new(config),
            usage: Arc::new(UsageRecorder::alerting_on(alerting)),
            // Half the cores at most: validation keeps the other half during a sign-in burst.
            passwords: PasswordCheck::new(std::thread::available_parallelism().map(|n| n.get() / 2).unwrap_or(1)),
            cache,
        })
    }

    /// The token cache's counters, if it is on.
    pub fn token_cache_stats(&self) -> Option<token_cache::CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// What the usage recorder holds in memory, and the length of the pending log behind it.
    pub async fn usage_stats(&self) -> CoreResult<UsageStats> {
        let unfolded = self.db.read(crate::db::usage::backlog).await?;
        Ok(UsageStats { recorder: self.usage.stats(), unfolded })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn registry(&self) -> &KeyTypeRegistry {
        &self.registry
    }

    fn lifetimes(&self) -> SiteLifetimes {
        SiteLifetimes {
            session: chrono::Duration::minutes(self.config.session_timeout_minutes),
            token: chrono::Duration::days(self.config.token_days),
        }
    }

    /// A person, by id.
    pub async fn user(&self, id: i64) -> CoreResult<User> {
        self.db.read(move |conn| crate::db::users::find(conn, id)).await?.ok_or(CoreError::NotFound)
    }

    /// Whether the database answers (for load balancers).
    pub async fn healthy(&self) -> bool {
        match self.db.ping_within(std::time::Duration::from_millis(1500)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "health check failed");
                false
            }
        }
    }

    /// Issues a key in place of the owner's earlier ones of its type (a new auto-login key, a
    /// new reset link), in one transaction.
    async fn issue_replacing(
        &self,
        replaced: crate::keys::ops::Revocation,
        request: crate::keys::ops::KeyRequest,
        now: chrono::NaiveDateTime,
    ) -> CoreResult<crate::keys::ops::IssuedKey> {
        let (registry, actor) = (self.registry.clone(), replaced.actor.clone());
        Ok(self
            .db
            .write(move |write| {
                crate::keys::ops::revoke(write, &registry, &replaced, now)?;
                crate::keys::ops::issue(write, &registry, request, &actor, now)
            })
            .await?)
    }

    /// Counts one use of a key whose uses are counted per call.
    pub fn record_use(&self, key_id: i64, client: &Client) {
        self.usage.record(key_id, &client.user_agent, client.ip, crate::domain::time::now());
    }

    /// Starts the background work: the usage writer, SQLite's upkeep, and warming the cache.
    pub fn start_background(self: &Arc<Self>) -> anyhow::Result<Background> {
        let writer = UsageWriter::spawn(self.usage.clone(), self.db.clone())?;
        self.db.spawn_checkpointer()?;
        if let Some(cache) = self.cache.clone() {
            let core = self.clone();
            std::thread::Builder::new().name("cache-warm-up".into()).spawn(move || {
                // On PostgreSQL, once other instances' writes are heard: what is loaded before is dropped.
                if let Some(peers) = core.db.peers() {
                    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
                    while !peers.cache_usable() && std::time::Instant::now() < give_up {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
                match cache.preload(&core.db, &core.registry, &core.usage) {
                    Ok(n) => tracing::info!(keys = n, "token cache warmed"),
                    Err(e) => tracing::warn!(error = %e, "warming the token cache failed"),
                }
            })?;
        }
        let upkeep = unused_keys::Upkeep::spawn(self.clone())?;
        Ok(Background { writer: Some(writer), upkeep: Some(upkeep), core: self.clone() })
    }
}

/// The background work of a running site; `finish` writes what usage is still pending.
pub struct Background {
    writer: Option<UsageWriter>,
    upkeep: Option<unused_keys::Upkeep>,
    core: Arc<Core>,
}

impl Background {
    pub async fn finish(mut self) -> anyhow::Result<()> {
        let writer = self.writer.take();
        let upkeep = self.upkeep.take();
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(upkeep) = upkeep {
                upkeep.stop();
            }
            if let Some(writer) = writer {
                writer.stop();
            }
            core.usage.finish_blocking(&core.db)
        })
        .await??;
        Ok(())
    }
}
