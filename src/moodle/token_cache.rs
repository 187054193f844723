//! Validated tokens kept in memory, so the hot path does not touch the database.
//!
//! Correctness over speed: an entry is only a snapshot of the database at one write generation
//! of this process. Any committed write (a revocation, a suspension, a service switched off…)
//! moves the generation on, which empties the cache before the writer's response is sent — so
//! a revoked token is refused on the very next request. Writes by other processes are not seen,
//! so the cache is only on where this process is the only writer (SQLite by default).

use super::auth::AuthenticatedToken;
use crate::db::models::Service;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Past this many entries the cache starts again, bounding memory.
const MAX_ENTRIES: usize = 200_000;

#[derive(Default)]
pub struct TokenCache {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    /// Keyed by the raw SHA-256 of the token.
    entries: HashMap<[u8; 32], Arc<AuthenticatedToken>>,
    /// One copy of each service and its functions, shared by all its tokens.
    services: HashMap<i64, (Arc<Service>, Arc<Vec<String>>)>,
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

    /// Keeps `token`, read from the database when the generation was `read_at`, unless a write
    /// has been committed since (`now`): then what was read may already be stale.
    pub fn insert(&self, hash: &str, mut token: AuthenticatedToken, read_at: u64, now: u64) -> Arc<AuthenticatedToken> {
        let Some(key) = raw(hash).filter(|_| read_at == now) else { return Arc::new(token) };
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.generation != read_at || inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
            inner.services.clear();
            inner.generation = read_at;
        }
        let (service, functions) = inner
            .services
            .entry(token.service.id)
            .or_insert_with(|| (token.service.clone(), token.functions.clone()))
            .clone();
        token.service = service;
        token.functions = functions;
        // What a call never needs stays out of memory.
        token.user.password_hash = String::new();
        token.key.secret_hash = None;
        token.key.details = None;
        let token = Arc::new(token);
        inner.entries.insert(key, token.clone());
        token
    }
}
