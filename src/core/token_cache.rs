//! Validated keys of the types whose policy says `cached` (web-service tokens) kept in memory, so the hot path does not touch the database.
//!
//! Correctness over speed: every write of this process that can make a key invalid (a
//! revocation, a suspension, a service switched off…) drops what it affected from the cache
//! once it commits and before the writer's response is sent — so a revoked token is refused on
//! the very next request — and moves the write generation on, so that a read which began before
//! it is not cached. On PostgreSQL, other instances' writes reach it through `db::peers`, and
//! it is used only while that link holds. Writes by other processes on one SQLite file are not
//! seen: there, several instances must turn the cache off.
//!
//! Bounded by a memory budget (`USERKEYS_TOKEN_CACHE_MB`), not by a count: one `quick_cache`
//! (CLOCK-Pro / S3-FIFO-like eviction) holds two kinds of entry, each weighed in bytes —
//!
//! - a token: 8 bytes of its digest as the key, 8 more to check, its key id, expiry, its owner
//!   and a pointer to what it shares with every token of its type and service (`Kind`); the
//!   rare extras (an IP restriction, a private token) in a `Kind` of the token's own. No
//!   `String`s, and 40 bytes, so that a slot of the cache is one 64-byte cache line.
//! - an owner, by user id, shared by all their tokens, and weighed once. The tokens hold the
//!   owner the cache holds, and a token is a hit only while the cache still holds its owner:
//!   when the owner's entry goes (evicted, or dropped by a write: a suspension) the owner is
//!   marked let go, so suspending a person drops one entry, not a scan of millions. A hit thus
//!   takes one lookup, not two; the owner's entry is looked up once in `OWNER_TOUCH` by a hit
//!   of its tokens, so that eviction sees it in use.
//!
//! Evicting a token also drops it from `by_key` (key id → cache slot, for revocations by id), so
//! that index is exactly as large as the tokens cached: every cached token is in it, which is
//! what makes a revocation by id always find it.

use super::valid_key::{load_service, KeyOwner, ServiceAccess, ValidKey};
use crate::db::peers::Peers;
use crate::db::{Db, Invalidation};
use crate::domain::ip_restriction::IpRestriction;
use crate::keys::KeyTypeRegistry;
use chrono::NaiveDateTime;
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// What a cached token costs, in bytes, beyond its rare extras: its slot in the cache (key,
/// value, state and list links), its share of the cache's hash table and of the ghost list
/// (recently evicted keys, 10% of the entries), and its row in `by_key`. Measured with
/// `bytes_per_token` below (RSS growth / tokens), rounded up.
const TOKEN_BYTES: u64 = 104;
/// What a cached owner costs beyond its two names: slot, table, the shared `KeyOwner` and an
/// allowance for its site-info answer, serialised at first use.
const OWNER_BYTES: u64 = 96 + 112 + 160;
/// Share of the entries kept as ghosts (hashes of recently evicted keys, which come back hot).
const GHOSTS: f64 = 0.1;
/// Tokens per owner in the cache's estimate of how many entries its budget holds (a person
/// with a phone and a tablet, each token beside its owner's entry). quick_cache keeps `GHOSTS`
/// of that estimate as ghosts, about 70 bytes each, whether or not the entries are that many:
/// estimated as tokens alone, the ghosts were a quarter of the entries at 10,000,000 keys,
/// where nearly every cached token brings its owner (260,000 ghosts, 18 MB, not 7).
const TOKENS_PER_OWNER: u64 = 2;
/// How many entries (tokens and owners) `budget` bytes hold, as `TOKENS_PER_OWNER` has it.
fn estimated_entries(budget: u64) -> usize {
    const NAMES: u64 = 2 * 24;
    let group = TOKENS_PER_OWNER * TOKEN_BYTES + OWNER_BYTES + NAMES;
    usize::try_from(budget / group * (TOKENS_PER_OWNER + 1)).unwrap_or(usize::MAX)
}

/// Copies of what tokens of one type and service share (`Kind`, and the service in it); a token
/// holds the copy of its key id. Every hit clones its kind and service and drops them again,
/// and with one copy those counts of holders, written by every call on both cores, moved their
/// cache line between the cores each time.
const KIND_COPIES: i64 = 16;

/// How often a hit also looks its owner's entry up, which counts as a use of it: the owner of
/// tokens in use stays cached. An owner is looked at by eviction about once per pass over the
/// cache, minutes apart when it is full, and its first hit after it is cached always looks.
const OWNER_TOUCH: std::time::Duration = std::time::Duration::from_secs(10);

/// The cache's marks on an owner it holds, read by every hit of the owner's tokens.
#[derive(Debug, Default)]
pub struct OwnerMark {
    /// The cache let this owner go: its tokens are misses, read again with their owner.
    let_go: AtomicBool,
    /// When a hit last looked the owner's entry up (whole seconds since the cache started, and
    /// 0 for never).
    touched: AtomicU32,
}

impl OwnerMark {
    fn let_go(&self) {
        self.let_go.store(true, Ordering::Release);
    }

    fn held(&self) -> bool {
        !self.let_go.load(Ordering::Acquire)
    }
}

/// A slot of the cache: the first 8 bytes of a token's digest, or a mix of an owner's id.
type Slot = u64;

#[derive(Clone)]
enum Cached {
    Token(Token),
    Owner(Arc<KeyOwner>),
}

/// A cached token, compact: everything a hit needs.
#[derive(Clone)]
struct Token {
    /// Bytes 8..16 of the digest: with the slot, 128 bits of it must match.
    check: u64,
    key_id: i64,
    /// The owner the cache holds (see `OwnerMark`).
    owner: Arc<KeyOwner>,
    /// `valid_until` in microseconds since the epoch (rounded down, so never later); `i64::MAX`
    /// for none.
    valid_until: i64,
    /// Shared with the tokens of its type and service; a token's own if it has rare extras
    /// (a pointer more in every token made its slot of the cache 72 bytes, and a hit then
    /// often read two cache lines).
    kind: Arc<Kind>,
}

// With its key and quick_cache's own fields, a value of 40 bytes makes a 64-byte slot.
const _: () = assert!(std::mem::size_of::<Cached>() <= 40);

/// What tokens of one type and service share, or one token's with its rare extras.
struct Kind {
    key_type: Box<str>,
    type_enabled: bool,
    service: Option<Arc<ServiceAccess>>,
    rare: Option<Rare>,
}

/// What few tokens have.
struct Rare {
    ip_restriction: Option<IpRestriction>,
    private_hash: Option<Box<str>>,
    bytes: u64,
}

fn split(digest: &[u8; 32]) -> (Slot, u64) {
    let (head, rest) = digest.split_at(8);
    (u64::from_le_bytes(head.try_into().unwrap()), u64::from_le_bytes(rest[..8].try_into().unwrap()))
}

/// An owner's slot: its id times an odd constant (a bijection), spread over the bits the cache
/// picks shards and buckets with. That it could meet a token's slot is harmless: a hit checks
/// which kind of entry it found and whose it is, and one replacing the other is only a miss.
fn owner_slot(user_id: i64) -> Slot {
    (user_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn micros(at: Option<NaiveDateTime>) -> i64 {
    at.map_or(i64::MAX, |t| t.and_utc().timestamp_micros())
}

fn from_micros(m: i64) -> Option<NaiveDateTime> {
    (m != i64::MAX).then(|| chrono::DateTime::from_timestamp_micros(m).map(|t| t.naive_utc())).flatten()
}

#[derive(Clone)]
struct Weigh;

impl Weighter<Slot, Cached> for Weigh {
    fn weight(&self, _: &Slot, value: &Cached) -> u64 {
        match value {
            Cached::Token(t) => TOKEN_BYTES + t.kind.rare.as_ref().map_or(0, |r| r.bytes),
            Cached::Owner(o) => OWNER_BYTES + 2 * (o.username.len() + o.fullname.len()) as u64,
        }
    }
}

/// Collects the tokens an insert evicted, so that `by_key` drops them too.
#[derive(Clone)]
struct Evictions;

impl Lifecycle<Slot, Cached> for Evictions {
    /// Evicted entries, dropped once the cache's lock is released.
    type RequestState = Vec<(Slot, Cached)>;

    fn on_evict(&self, state: &mut Self::RequestState, slot: Slot, value: Cached) {
        state.push((slot, value));
    }
}

/// Keys are SHA-256 digests (or mixed ids), already uniformly spread: their eight bytes are the
/// hash, which spares every lookup a hashing pass. (Digests come from the server's own hashing
/// of whatever a client sends, so a client cannot choose them to collide.)
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
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn write_i64(&mut self, v: i64) {
        // Key ids in `by_key`: sequential, so mixed.
        self.0 = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn raw(hash: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hash, &mut out).ok()?;
    Some(out)
}

/// What the writers (inserts after a miss, invalidations) keep, under one lock.
#[derive(Default)]
struct Writer {
    /// Key id → slot, for every cached token (and no more: evictions drop theirs).
    by_key: HashMap<i64, Slot, DigestHash>,
    /// Per type, switch, service and copy (see `KIND_COPIES`).
    kinds: HashMap<(Box<str>, bool, Option<i64>, u8), Arc<Kind>>,
}

/// Counters for the benchmark and the logs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub tokens: usize,
    /// Entries, tokens and owners.
    pub entries: usize,
    pub weight_bytes: u64,
    pub budget_bytes: u64,
}

/// A count that request threads add to without sharing a cache line: each thread adds to a
/// stripe of its own (by the order threads first counted), and reading sums them. One counter
/// written by every hit moved its line between the cores on every request.
#[derive(Default)]
struct Counter([Stripe; STRIPES]);

#[repr(align(64))]
#[derive(Default)]
struct Stripe(AtomicU64);

const STRIPES: usize = 8;

impl Counter {
    fn add_one(&self) {
        self.0[crate::thread_stripe::own(STRIPES)].0.fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|stripe| stripe.0.load(Ordering::Relaxed)).sum()
    }
}

pub struct TokenCache {
    entries: Cache<Slot, Cached, Weigh, DigestHash, Evictions>,
    writer: Mutex<Writer>,
    services: RwLock<HashMap<i64, Arc<ServiceAccess>>>,
    /// On PostgreSQL: the cache is used only while other instances' writes reach it.
    coherence: Option<Arc<Peers>>,
    hits: Counter,
    misses: Counter,
    budget: u64,
    /// The clock of `OwnerMark::touched`.
    started: std::time::Instant,
}

impl Token {
    fn valid_key(&self) -> ValidKey {
        ValidKey {
            key_id: self.key_id,
            key_type: self.kind.key_type.clone(),
            valid_until: from_micros(self.valid_until),
            ip_restriction: self.kind.rare.as_ref().and_then(|r| r.ip_restriction.clone()),
            private_hash: self.kind.rare.as_ref().and_then(|r| r.private_hash.clone()),
            type_enabled: self.kind.type_enabled,
            user: self.owner.clone(),
            service: self.kind.service.clone(),
        }
    }
}

impl TokenCache {
    /// A cache holding at most about `budget_bytes` of tokens and their owners.
    pub fn new(coherence: Option<Arc<Peers>>, budget_bytes: u64) -> Self {
        let budget = budget_bytes.max(64 * 1024);
        let options = OptionsBuilder::new()
            .estimated_items_capacity(estimated_entries(budget))
            .weight_capacity(budget)
            .ghost_allocation(GHOSTS)
            .build()
            .expect("cache options");
        let entries = Cache::with_options(options, Weigh, DigestHash, Evictions);
        TokenCache {
            entries,
            writer: Default::default(),
            services: Default::default(),
            coherence,
            hits: Default::default(),
            misses: Default::default(),
            budget,
            started: std::time::Instant::now(),
        }
    }

    fn usable(&self) -> bool {
        self.coherence.as_ref().is_none_or(|peers| peers.cache_usable())
    }

    pub fn stats(&self) -> CacheStats {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        CacheStats {
            hits: self.hits.total(),
            misses: self.misses.total(),
            tokens: writer.by_key.len(),
            entries: self.entries.len(),
            weight_bytes: self.entries.weight(),
            budget_bytes: self.budget,
        }
    }

    /// The cached token whose secret has this SHA-256.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<ValidKey>> {
        if !self.usable() {
            return None;
        }
        let found = self.lookup(digest);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.add_one();
        found
    }

    fn lookup(&self, digest: &[u8; 32]) -> Option<Arc<ValidKey>> {
        let (slot, check) = split(digest);
        let Some(Cached::Token(token)) = self.entries.get(&slot) else { return None };
        if token.check != check || !token.owner.cache_mark.held() {
            return None;
        }
        let mark = &token.owner.cache_mark;
        let now = self.started.elapsed().as_secs() as u32 + 1;
        let touched = mark.touched.load(Ordering::Relaxed);
        if touched == 0 || now.saturating_sub(touched) >= OWNER_TOUCH.as_secs() as u32 {
            match self.entries.get(&owner_slot(token.owner.id)) {
                Some(Cached::Owner(owner)) if Arc::ptr_eq(&owner, &token.owner) => {
                    mark.touched.store(now, Ordering::Relaxed)
                }
                _ => return None,
            }
        }
        Some(Arc::new(token.valid_key()))
    }

    pub fn service(&self, id: i64) -> Option<Arc<ServiceAccess>> {
        if !self.usable() {
            return None;
        }
        self.services.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Keeps `token`, read from the database at write generation `read_at`, unless an
    /// invalidating write has been committed since (`now`): what was read may be stale.
    /// The generation is compared under the writers' lock: a writer moves it on before it takes
    /// the lock to drop entries, so either this insert sees the new generation and gives up, or
    /// the writer's drop comes after it.
    pub fn insert(&self, digest: [u8; 32], token: ValidKey, read_at: u64, db: &Db) -> Arc<ValidKey> {
        if !self.usable() {
            return Arc::new(token);
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if db.generation() != read_at {
            return Arc::new(token);
        }
        self.add(&mut writer, &digest, &token);
        Arc::new(token)
    }

    fn add(&self, writer: &mut Writer, digest: &[u8; 32], token: &ValidKey) {
        let service_id = token.service.as_ref().map(|s| s.service.id);
        let copy = token.key_id.rem_euclid(KIND_COPIES) as u8;
        // What few tokens have makes a kind of the token's own, weighed with the token: the
        // kind itself, its copy of the type's name, and the extras.
        let rare = (token.ip_restriction.is_some() || token.private_hash.is_some()).then(|| Rare {
            ip_restriction: token.ip_restriction.clone(),
            private_hash: token.private_hash.clone(),
            bytes: 96
                + token.key_type.len() as u64
                + token.private_hash.as_ref().map_or(0, |p| p.len() as u64)
                + token.ip_restriction.as_ref().map_or(0, |_| 64),
        });
        let new_kind = |service: Option<Arc<ServiceAccess>>, rare: Option<Rare>| {
            Arc::new(Kind { key_type: token.key_type.clone(), type_enabled: token.type_enabled, service, rare })
        };
        // A personal access token's view of its service, narrowed to its own functions, is its
        // own too: never shared with the service's other tokens, nor handed out as the service.
        let kind = match &token.service {
            Some(service) if service.narrowed => new_kind(token.service.clone(), rare),
            _ => {
                let shared = writer
                    .kinds
                    .entry((token.key_type.clone(), token.type_enabled, service_id, copy))
                    .or_insert_with(|| new_kind(token.service.as_ref().map(|s| Arc::new(s.copy())), None))
                    .clone();
                match rare {
                    // Its own kind, holding the copy of the service its key id picks, as the
                    // shared kinds do, so that its hits do not all count on one copy.
                    Some(rare) => new_kind(shared.service.clone(), Some(rare)),
                    None => shared,
                }
            }
        };
        if let Some(service) = token.service.as_ref().filter(|s| !s.narrowed) {
            let mut services = self.services.write().unwrap_or_else(|p| p.into_inner());
            services.entry(service.service.id).or_insert_with(|| service.clone());
        }
        let mut evicted = Vec::new();
        // The token holds the owner the cache holds, so that letting that go reaches every token
        // of it. Peeked, not got: only a hit makes an entry look used, or owners would outlive
        // their tokens.
        let slot_of_owner = owner_slot(token.user.id);
        let owner = match self.entries.peek(&slot_of_owner) {
            Some(Cached::Owner(o)) if o.id == token.user.id && o.cache_mark.held() => o,
            _ => {
                let owner = token.user.clone();
                self.entries.insert_with_lifecycle(slot_of_owner, Cached::Owner(owner.clone()), &mut evicted);
                owner
            }
        };
        let (slot, check) = split(digest);
        let entry = Token { check, key_id: token.key_id, owner, valid_until: micros(token.valid_until), kind };
        // Listed before it is cached: should caching it evict it at once, the eviction unlists it.
        writer.by_key.insert(token.key_id, slot);
        self.entries.insert_with_lifecycle(slot, Cached::Token(entry), &mut evicted);
        // quick_cache reports a replaced value as evicted too (the same token cached again by
        // two misses at once): unlisted only if that slot no longer holds that key.
        for (slot, value) in &evicted {
            match value {
                Cached::Token(t) => {
                    let still = matches!(self.entries.peek(slot), Some(Cached::Token(c)) if c.key_id == t.key_id);
                    if !still && writer.by_key.get(&t.key_id) == Some(slot) {
                        writer.by_key.remove(&t.key_id);
                    }
                }
                // An owner is cached only while none is: the one evicted is gone.
                Cached::Owner(o) => o.cache_mark.let_go(),
            }
        }
    }

    /// Drops what a committed write may have made invalid.
    pub fn invalidate(&self, what: &Invalidation) {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match what {
            Invalidation::All => {
                writer.by_key.clear();
                writer.kinds.clear();
                self.entries.clear();
                self.services.write().unwrap_or_else(|p| p.into_inner()).clear();
            }
            Invalidation::Keys(ids) => {
                for id in ids {
                    if let Some(slot) = writer.by_key.remove(id) {
                        self.entries.remove_if(&slot, |v| matches!(v, Cached::Token(t) if t.key_id == *id));
                    }
                }
            }
            // Their tokens stay, but are no hit without their owner: the next use reads it anew.
            Invalidation::Users(users) => {
                for user in users {
                    let dropped =
                        self.entries.remove_if(&owner_slot(*user), |v| matches!(v, Cached::Owner(o) if o.id == *user));
                    if let Some((_, Cached::Owner(owner))) = dropped {
                        owner.cache_mark.let_go();
                    }
                }
            }
        }
    }

    /// Whether warming up should stop: the budget is nearly spent, and loading more would only
    /// evict what was loaded.
    fn nearly_full(&self) -> bool {
        self.entries.weight() >= self.entries.capacity() / 100 * 90
    }

    /// Loads active keys of every cached type, in chunks, so the first request of each is
    /// a hit too, until the budget is nearly spent. A chunk read while some write commits is
    /// dropped (the next request reads it anew).
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
            if self.nearly_full() {
                return Ok(loaded);
            }
            let read_at = db.generation();
            let (rows, last, services, type_enabled) = db.read_blocking(|conn| {
                let now = crate::domain::time::now();
                let (rows, last) = crate::db::keys::active_of_type_after(conn, key_type, after, 5_000, now)?;
                let mut services = HashMap::new();
                for (key, _) in &rows {
                    if let Some(id) = key.service_id.filter(|id| !services.contains_key(id)) {
                        if let Some(s) = load_service(conn, id)? {
                            services.insert(id, Arc::new(s));
                        }
                    }
                }
                let enabled = crate::db::key_types::enabled(conn, key_type, registry.on_by_default(key_type))?;
                Ok((rows, last, services, enabled))
            })?;
            let Some(last) = last else { return Ok(loaded) };
            after = last;
            usage.known_last_used(rows.iter().filter_map(|(k, _)| Some((k.id, k.last_used_at?))));
            // Shared with what is cached already, as a miss's insert would.
            let services: HashMap<i64, Arc<ServiceAccess>> = services
                .into_iter()
                .map(|(id, s)| {
                    (id, self.services.read().unwrap_or_else(|p| p.into_inner()).get(&id).cloned().unwrap_or(s))
                })
                .collect();
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if db.generation() != read_at {
                continue;
            }
            for (key, user) in rows {
                let Some(hash) = key.secret_hash.as_deref().and_then(raw) else { continue };
                let service = key.service_id.and_then(|id| services.get(&id)).cloned();
                let user = match self.entries.peek(&owner_slot(user.id)) {
                    Some(Cached::Owner(o)) if o.id == user.id => o,
                    _ => Arc::new(KeyOwner::of(&user)),
                };
                if let Some(token) = ValidKey::from_rows(key.into(), user, service, type_enabled, registry) {
                    self.add(&mut writer, &hash, &token);
                    loaded += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::models::User;

    fn owner(id: i64) -> Arc<KeyOwner> {
        Arc::new(KeyOwner::of(&User {
            id,
            username: format!("user{id}"),
            fullname: format!("User Number {id}"),
            email: String::new(),
            password_hash: String::new(),
            suspended: false,
            is_site_admin: false,
            created_at: crate::domain::time::now(),
        }))
    }

    fn token(key_id: i64, user: Arc<KeyOwner>) -> ValidKey {
        ValidKey {
            key_id,
            key_type: "webservice_token".into(),
            valid_until: Some(crate::domain::time::now() + chrono::Duration::days(30)),
            ip_restriction: None,
            private_hash: None,
            type_enabled: true,
            user,
            service: None,
        }
    }

    fn digest(i: i64) -> [u8; 32] {
        crate::domain::secret::SecretHash::digest(&format!("token{i}"))
    }

    fn fill(cache: &TokenCache, tokens: i64, per_owner: i64) {
        let mut writer = cache.writer.lock().unwrap();
        let mut user = owner(0);
        for i in 0..tokens {
            if i % per_owner == 0 {
                user = owner(i / per_owner);
            }
            cache.add(&mut writer, &digest(i), &token(i, user.clone()));
        }
    }

    #[test]
    fn a_hit_is_the_token_it_was_given_and_nothing_else() {
        let cache = TokenCache::new(None, 16 << 20);
        fill(&cache, 1000, 10);
        let hit = cache.get(&digest(7)).expect("cached");
        assert_eq!((hit.key_id, hit.user.id, hit.key_type.as_ref()), (7, 0, "webservice_token"));
        let at = hit.valid_until.unwrap();
        assert!(at.and_utc().timestamp_micros() > 0);
        // Same first 8 bytes, other 8 different: not a hit.
        let mut other = digest(7);
        other[12] ^= 1;
        assert!(cache.get(&other).is_none());
        assert!(cache.get(&digest(5000)).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.tokens), (1, 2, 1000));
    }

    /// A token's rare extras come back with it, and only with it; it weighs them besides.
    #[test]
    fn a_tokens_ip_restriction_and_private_token_are_its_own() {
        let cache = TokenCache::new(None, 16 << 20);
        let user = owner(1);
        let mut restricted = token(1, user.clone());
        restricted.ip_restriction = IpRestriction::parse("10.0.0.0/8").unwrap();
        restricted.private_hash = Some("ab".repeat(32).into());
        {
            let mut writer = cache.writer.lock().unwrap();
            cache.add(&mut writer, &digest(1), &restricted);
            cache.add(&mut writer, &digest(1 + KIND_COPIES), &token(1 + KIND_COPIES, user));
        }
        let hit = cache.get(&digest(1)).expect("cached");
        let restriction = hit.ip_restriction.as_ref().expect("its restriction");
        assert!(restriction.allows("10.1.2.3".parse().unwrap()) && !restriction.allows("192.0.2.1".parse().unwrap()));
        assert_eq!(hit.private_hash.as_deref(), Some("ab".repeat(32).as_str()));
        // Same type, service and copy of the kinds: none of it.
        let plain = cache.get(&digest(1 + KIND_COPIES)).expect("cached");
        assert!(plain.ip_restriction.is_none() && plain.private_hash.is_none());
        assert!(cache.stats().weight_bytes > 2 * TOKEN_BYTES + OWNER_BYTES + 64, "the extras are weighed");
    }

    /// Two misses of one token at once both cache it: the second replaces the first, and a
    /// revocation still finds it.
    #[test]
    fn a_token_cached_twice_is_still_dropped_when_revoked() {
        let cache = TokenCache::new(None, 16 << 20);
        fill(&cache, 10, 10);
        fill(&cache, 10, 10);
        assert_eq!(cache.stats().tokens, 10);
        cache.invalidate(&Invalidation::Keys(vec![4]));
        assert!(cache.get(&digest(4)).is_none());
    }

    #[test]
    fn revoking_by_id_and_suspending_an_owner_drop_their_tokens() {
        let cache = TokenCache::new(None, 16 << 20);
        fill(&cache, 100, 10);
        cache.invalidate(&Invalidation::Keys(vec![3, 4]));
        assert!(cache.get(&digest(3)).is_none() && cache.get(&digest(4)).is_none());
        assert!(cache.get(&digest(5)).is_some());
        // Owner 2 has keys 20..30.
        cache.invalidate(&Invalidation::Users(vec![2]));
        assert!((20..30).all(|i| cache.get(&digest(i)).is_none()));
        assert!(cache.get(&digest(30)).is_some());
        cache.invalidate(&Invalidation::All);
        assert!(cache.get(&digest(50)).is_none());
        assert_eq!(cache.stats().tokens, 0);
    }

    /// Far more tokens than the budget holds: the cache stays within it, every token it holds is
    /// listed by id (so a revocation finds it) and only those are.
    #[test]
    fn a_small_budget_evicts_and_keeps_the_index_exact() {
        let budget = 1 << 20;
        let cache = TokenCache::new(None, budget);
        fill(&cache, 50_000, 5);
        let stats = cache.stats();
        assert!(stats.weight_bytes <= budget, "{stats:?}");
        assert!(stats.tokens > 2_000 && stats.tokens < 10_000, "{stats:?}");
        let writer = cache.writer.lock().unwrap();
        let cached: Vec<i64> = cache
            .entries
            .iter()
            .filter_map(|(_, v)| match v {
                Cached::Token(t) => Some(t.key_id),
                Cached::Owner(_) => None,
            })
            .collect();
        assert_eq!(cached.len(), writer.by_key.len());
        assert!(cached.iter().all(|id| writer.by_key.contains_key(id)));
        drop(writer);
        // Revoking every cached one leaves none of them a hit.
        cache.invalidate(&Invalidation::Keys(cached.clone()));
        assert!(cached.iter().all(|&i| cache.get(&digest(i)).is_none()));
        assert_eq!(cache.stats().tokens, 0);
    }

    /// Tokens hold their owner rather than look it up: one whose owner was evicted, or dropped
    /// with a suspension, is a miss however often it is used, and a hit always brings the owner
    /// the cache holds now.
    #[test]
    fn a_hit_never_brings_an_owner_the_cache_let_go() {
        let cache = TokenCache::new(None, 1 << 20);
        fill(&cache, 50_000, 5);
        let held = |user_id: i64| match cache.entries.peek(&owner_slot(user_id)) {
            Some(Cached::Owner(o)) => Some(o),
            _ => None,
        };
        let (mut hits, mut orphans) = (0, 0);
        for i in 0..50_000 {
            let Some(Cached::Token(t)) = cache.entries.peek(&split(&digest(i)).0) else { continue };
            match held(t.owner.id) {
                Some(o) if Arc::ptr_eq(&o, &t.owner) => {
                    // Twice: the second hit is within `OWNER_TOUCH` of the first, and is not looked up.
                    for _ in 0..2 {
                        let key = cache.get(&digest(i)).expect("a token whose owner is held is a hit");
                        assert!(Arc::ptr_eq(&key.user, &o));
                    }
                    hits += 1;
                }
                _ => {
                    assert!(cache.get(&digest(i)).is_none(), "token {i}'s owner was evicted");
                    orphans += 1;
                }
            }
        }
        assert!(hits > 1_000 && orphans > 0, "{hits} hits, {orphans} tokens whose owner was evicted");

        // A token cached again joins the owner that is cached, not the one it was read with.
        let mut writer = cache.writer.lock().unwrap();
        let user = held(9_999).unwrap_or_else(|| owner(9_999));
        cache.add(&mut writer, &digest(49_999), &token(49_999, owner(9_999)));
        cache.add(&mut writer, &digest(49_998), &token(49_998, owner(9_999)));
        drop(writer);
        let (a, b) = (cache.get(&digest(49_999)).unwrap(), cache.get(&digest(49_998)).unwrap());
        assert!(Arc::ptr_eq(&a.user, &b.user));
        assert!(held(9_999).is_some_and(|o| Arc::ptr_eq(&o, &a.user)), "{}", user.id);

        // Suspending the owner lets it go: both tokens are misses at once, touched or not.
        cache.invalidate(&Invalidation::Users(vec![9_999]));
        assert!(cache.get(&digest(49_999)).is_none() && cache.get(&digest(49_998)).is_none());
    }

    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        pages * 4096
    }

    /// Bytes per cached token, measured: `cargo test --release --lib bytes_per_token -- --ignored --nocapture`
    /// (alone: other tests would move the process's RSS too).
    #[test]
    #[ignore]
    fn bytes_per_token() {
        const TOKENS: i64 = 2_000_000;
        const PER_OWNER: i64 = 10;
        // glibc (the tests' allocator) raises its threshold for mapping large blocks as they are
        // freed, and then keeps the tables the cache outgrew in its heap, counted in RSS: fixed,
        // RSS counts what the cache holds, as under the server's allocator.
        // SAFETY: a plain setting of the allocator, made before this test allocates.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
        let cache = TokenCache::new(None, 1 << 30);
        let before = rss_bytes();
        fill(&cache, TOKENS, PER_OWNER);
        let after = rss_bytes();
        let stats = cache.stats();
        let per_token = (after - before) as f64 / TOKENS as f64;
        println!(
            "{TOKENS} tokens, {} owners: RSS +{} MB, {per_token:.0} bytes per token with its owner's share; weighed {:.0} per token",
            TOKENS / PER_OWNER,
            (after - before) >> 20,
            stats.weight_bytes as f64 / TOKENS as f64
        );
        println!("size of a slot's value: {} bytes", std::mem::size_of::<Cached>());
        assert_eq!(stats.tokens, TOKENS as usize);
    }

    /// What a hit costs as the cache grows, on two threads looking up tokens at random (the
    /// owner read as a call reads it): `cargo test --release --lib hit_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn hit_cost() {
        for tokens in [10_000i64, 100_000, 1_000_000, 4_000_000] {
            let cache = TokenCache::new(None, 1 << 30);
            fill(&cache, tokens, 10);
            let digests: Vec<[u8; 32]> = (0..tokens).map(digest).collect();
            const LOOKUPS: usize = 2_000_000;
            let started = std::time::Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let (cache, digests) = (&cache, &digests);
                    s.spawn(move || {
                        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                        let mut seen = 0usize;
                        for _ in 0..LOOKUPS {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let hit = cache.get(&digests[(x % digests.len() as u64) as usize]).expect("cached");
                            seen += hit.user.username.len();
                        }
                        std::hint::black_box(seen);
                    });
                }
            });
            let ns = started.elapsed().as_nanos() as f64 / LOOKUPS as f64;
            println!("{tokens:>9} tokens: {ns:.0} ns a hit (two threads at once)");
        }
    }
}
