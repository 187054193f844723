//! Validated keys of the types whose policy says `cached` (web-service tokens) kept in memory, so the hot path does not touch the database.
//!
//! Correctness over speed: every write of this process that can make a key invalid (a
//! revocation, a suspension, a service switched off…) drops what it affected from the cache
//! once it commits and before the writer's response is sent — so a revoked token is refused on
//! the very next request — and moves the write generation on, so that a read which began before
//! it is not cached. On PostgreSQL, other instances' writes reach it through `db::peers`, and
//! it is used only while that link holds. Writes by other processes on one SQLite file are not
//! seen: there, several instances must turn the cache off.

use super::valid_key::{load_service, KeyOwner, ServiceAccess, ValidKey};
use crate::db::peers::Peers;
use crate::db::{Db, Invalidation};
use crate::keys::KeyTypeRegistry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Past this many entries the cache starts again, bounding memory (about 200 bytes each).
const MAX_ENTRIES: usize = 500_000;

#[derive(Default)]
pub struct TokenCache {
    inner: RwLock<Inner>,
    /// On PostgreSQL: the cache is used only while other instances' writes reach it.
    coherence: Option<Arc<Peers>>,
}

#[derive(Default)]
struct Inner {
    /// Keyed by the raw SHA-256 of the token.
    entries: HashMap<[u8; 32], Arc<ValidKey>, DigestHash>,
    by_key: HashMap<i64, [u8; 32]>,
    /// One copy of each owner and service, shared by all their tokens.
    owners: HashMap<i64, Arc<KeyOwner>>,
    services: HashMap<i64, Arc<ServiceAccess>>,
}

impl Inner {
    fn clear(&mut self) {
        self.entries.clear();
        self.by_key.clear();
        self.owners.clear();
        self.services.clear();
    }

    fn add(&mut self, hash: [u8; 32], mut token: ValidKey) -> Arc<ValidKey> {
        if self.entries.len() >= MAX_ENTRIES {
            self.clear();
        }
        token.user = self.owners.entry(token.user.id).or_insert_with(|| token.user.clone()).clone();
        if let Some(service) = token.service.take() {
            token.service = Some(self.services.entry(service.service.id).or_insert(service).clone());
        }
        let token = Arc::new(token);
        self.by_key.insert(token.key_id, hash);
        self.entries.insert(hash, token.clone());
        token
    }
}

/// Keys are SHA-256 digests, already uniformly spread: their first eight bytes are the hash,
/// which spares every lookup a SipHash pass. (Digests come from the server's own hashing of
/// whatever a client sends, so a client cannot choose them to collide.)
#[derive(Clone, Copy, Default)]
struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*head);
        }
    }

    // The length an array's hash starts with says nothing; the bytes that follow decide.
    fn write_usize(&mut self, _: usize) {}
}

fn raw(hash: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hash, &mut out).ok()?;
    Some(out)
}

impl TokenCache {
    pub fn new(coherence: Option<Arc<Peers>>) -> Self {
        TokenCache { inner: Default::default(), coherence }
    }

    fn usable(&self) -> bool {
        self.coherence.as_ref().is_none_or(|peers| peers.cache_usable())
    }

    /// The cached token whose secret has this SHA-256.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<ValidKey>> {
        if !self.usable() {
            return None;
        }
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.entries.get(digest).cloned()
    }

    pub fn service(&self, id: i64) -> Option<Arc<ServiceAccess>> {
        if !self.usable() {
            return None;
        }
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.services.get(&id).cloned()
    }

    /// Keeps `token`, read from the database at write generation `read_at`, unless an
    /// invalidating write has been committed since (`now`): what was read may be stale.
    /// The generation is compared under the lock: a writer moves it on before it takes the lock
    /// to drop entries, so either this insert sees the new generation and gives up, or the
    /// writer's drop comes after it.
    pub fn insert(&self, digest: [u8; 32], token: ValidKey, read_at: u64, db: &Db) -> Arc<ValidKey> {
        if !self.usable() {
            return Arc::new(token);
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if db.generation() != read_at {
            return Arc::new(token);
        }
        inner.add(digest, token)
    }

    /// Drops what a committed write may have made invalid.
    pub fn invalidate(&self, what: &Invalidation) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match what {
            Invalidation::All => inner.clear(),
            Invalidation::Keys(ids) => {
                for id in ids {
                    if let Some(hash) = inner.by_key.remove(id) {
                        inner.entries.remove(&hash);
                    }
                }
            }
            Invalidation::Users(users) => {
                let doomed: Vec<(i64, [u8; 32])> = inner
                    .entries
                    .iter()
                    .filter(|(_, t)| users.contains(&t.user.id))
                    .map(|(hash, t)| (t.key_id, *hash))
                    .collect();
                for (id, hash) in doomed {
                    inner.entries.remove(&hash);
                    inner.by_key.remove(&id);
                }
                for user in users {
                    inner.owners.remove(user);
                }
            }
        }
    }

    /// Loads every active key of every cached type, in chunks, so the first request of each is
    /// a hit too. A chunk read while some write commits is dropped (the next request reads it
    /// anew).
    pub fn preload(
        &self,
        db: &Db,
        registry: &KeyTypeRegistry,
        usage: &crate::usage::UsageRecorder,
    ) -> crate::db::DbResult<usize> {
        let mut loaded = 0;
        for key_type in registry.all().filter(|t| t.policy.cached) {
            loaded += self.preload_type(db, registry, &key_type.id, usage)?;
        }
        Ok(loaded)
    }

    fn preload_type(
        &self,
        db: &Db,
        registry: &KeyTypeRegistry,
        key_type: &str,
        usage: &crate::usage::UsageRecorder,
    ) -> crate::db::DbResult<usize> {
        let mut after = 0;
        let mut loaded = 0;
        loop {
            let read_at = db.generation();
            let (rows, services, type_enabled) = db.read_blocking(|conn| {
                let now = crate::domain::time::now();
                let rows = crate::db::keys::active_of_type_after(conn, key_type, after, 5_000, now)?;
                let mut services = HashMap::new();
                for (key, _) in &rows {
                    if let Some(id) = key.service_id.filter(|id| !services.contains_key(id)) {
                        if let Some(s) = load_service(conn, id)? {
                            services.insert(id, Arc::new(s));
                        }
                    }
                }
                let enabled = crate::db::key_types::enabled(conn, key_type, registry.on_by_default(key_type))?;
                Ok((rows, services, enabled))
            })?;
            let Some(last) = rows.last().map(|(k, _)| k.id) else { return Ok(loaded) };
            after = last;
            usage.known_last_used(rows.iter().filter_map(|(k, _)| Some((k.id, k.last_used_at?))));
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            if db.generation() != read_at {
                continue;
            }
            if inner.entries.len() + rows.len() >= MAX_ENTRIES {
                return Ok(loaded);
            }
            for (key, user) in rows {
                let Some(hash) = key.secret_hash.as_deref().and_then(raw) else { continue };
                let service = key.service_id.and_then(|id| services.get(&id)).cloned();
                let owner = inner.owners.get(&user.id).cloned().unwrap_or_else(|| Arc::new(KeyOwner::of(&user)));
                if let Some(token) = ValidKey::from_rows(key, owner, service, type_enabled, registry) {
                    inner.add(hash, token);
                    loaded += 1;
                }
            }
        }
    }
}
