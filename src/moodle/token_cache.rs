//! Validated tokens kept in memory, so the hot path does not touch the database.
//!
//! Correctness over speed: an entry is only a snapshot of the database at one write generation
//! of this process. Any committed write (a revocation, a suspension, a service switched off…)
//! moves the generation on, which empties the cache before the writer's response is sent — so
//! a revoked token is refused on the very next request. Writes by other processes are not seen,
//! so the cache is only on where this process is the only writer (SQLite by default).

use super::auth::{load_service, AuthenticatedToken, ServiceAccess, TokenOwner};
use crate::db::Db;
use crate::keys::KeyTypeRegistry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Past this many entries the cache starts again, bounding memory (about 200 bytes each).
const MAX_ENTRIES: usize = 500_000;

#[derive(Default)]
pub struct TokenCache {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    /// Keyed by the raw SHA-256 of the token.
    entries: HashMap<[u8; 32], Arc<AuthenticatedToken>>,
    /// One copy of each owner and service, shared by all their tokens.
    owners: HashMap<i64, Arc<TokenOwner>>,
    services: HashMap<i64, Arc<ServiceAccess>>,
}

impl Inner {
    fn reset_if_stale(&mut self, generation: u64) {
        if self.generation != generation || self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
            self.owners.clear();
            self.services.clear();
            self.generation = generation;
        }
    }
}

fn raw(hash: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hash, &mut out).ok()?;
    Some(out)
}

impl TokenCache {
    /// The cached token for this hash, if cached at the current generation.
    pub fn get(&self, hash: &str, generation: u64) -> Option<Arc<AuthenticatedToken>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if inner.generation != generation {
            return None;
        }
        inner.entries.get(&raw(hash)?).cloned()
    }

    /// A service cached at this generation.
    pub fn service(&self, id: i64, generation: u64) -> Option<Arc<ServiceAccess>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (inner.generation == generation).then(|| inner.services.get(&id).cloned()).flatten()
    }

    /// Keeps `token`, read from the database when the generation was `read_at`, unless a write
    /// has been committed since (`now`): then what was read may already be stale.
    pub fn insert(&self, hash: &str, token: AuthenticatedToken, read_at: u64, now: u64) -> Arc<AuthenticatedToken> {
        let Some(key) = raw(hash).filter(|_| read_at == now) else { return Arc::new(token) };
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.reset_if_stale(read_at);
        let token = Arc::new(Self::shared(&mut inner, token));
        inner.entries.insert(key, token.clone());
        token
    }

    fn shared(inner: &mut Inner, mut token: AuthenticatedToken) -> AuthenticatedToken {
        token.user = inner.owners.entry(token.user.id).or_insert_with(|| token.user.clone()).clone();
        token.service = inner.services.entry(token.service.service.id).or_insert_with(|| token.service.clone()).clone();
        token
    }

    /// Loads every active web-service token, in chunks, so the first request of each is a hit
    /// too. A chunk read while some write commits is dropped (the next request reads it anew).
    pub fn preload(&self, db: &Db, registry: &KeyTypeRegistry) -> crate::db::DbResult<usize> {
        let mut after = 0;
        let mut loaded = 0;
        loop {
            let read_at = db.generation();
            let (rows, services) = db.read_blocking(|conn| {
                let rows = crate::db::keys::active_tokens_after(conn, after, 5_000, crate::domain::time::now())?;
                let mut services = HashMap::new();
                for (key, _) in &rows {
                    if let Some(id) = key.service_id.filter(|id| !services.contains_key(id)) {
                        if let Some(s) = load_service(conn, registry, id)? {
                            services.insert(id, Arc::new(s));
                        }
                    }
                }
                Ok((rows, services))
            })?;
            let Some(last) = rows.last().map(|(k, _)| k.id) else { return Ok(loaded) };
            after = last;
            if db.generation() != read_at {
                continue;
            }
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            if inner.entries.len() + rows.len() >= MAX_ENTRIES {
                return Ok(loaded);
            }
            inner.reset_if_stale(read_at);
            for (key, user) in rows {
                let (Some(hash), Some(service)) = (key.secret_hash.as_deref().and_then(raw), key.service_id.and_then(|id| services.get(&id))) else {
                    continue;
                };
                if let Some(token) = AuthenticatedToken::from_rows(key, &user, service.clone()) {
                    let token = Self::shared(&mut inner, token);
                    inner.entries.insert(hash, Arc::new(token));
                    loaded += 1;
                }
            }
        }
    }
}
