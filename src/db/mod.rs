//! Persistence: one code path over SQLite (embedded default) and PostgreSQL, chosen by URL.
//! `Db` is the handle the rest of the program holds: reads on a pool, writes in transactions
//! on a pool of their own, each write telling the caches what it made invalid.

pub mod audit;
pub mod client_alerts;
mod connection;
mod error;
mod invalidation;
pub mod key_search;
pub mod key_types;
pub mod keys;
mod maintenance;
mod migrations;
pub mod models;
pub mod peers;
mod quick_reads;
pub mod roles;
pub mod schema;
pub mod services;
pub mod sign_in_failures;
mod sqlite_rows;
pub mod unused_keys;
pub mod usage;
pub mod users;

pub use connection::{Backend, DbConn, DbLocation};
pub use error::{DbError, DbResult};
pub use invalidation::{Invalidation, InvalidationListener, Write};

use connection::Manager;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Pool = r2d2::Pool<Manager>;
type PooledConn = r2d2::PooledConnection<Manager>;

/// How long a request waits for a connection while the database answers: long enough to ride
/// out a burst that has every connection busy.
const CONNECTION_WAIT: Duration = Duration::from_secs(10);
/// How long it waits once connecting has failed: a person is told "temporarily unavailable" and
/// a load balancer gets its 503 at once, rather than each after the full wait.
const UNREACHABLE_WAIT: Duration = Duration::from_millis(500);

/// Whether the last attempt to reach the database failed, shared by both pools.
#[derive(Clone, Default)]
struct Reachability {
    unreachable: Arc<AtomicBool>,
}

impl Reachability {
    fn connection(&self, pool: &Pool) -> Result<PooledConn, r2d2::Error> {
        let wait = if self.unreachable.load(Ordering::Relaxed) { UNREACHABLE_WAIT } else { CONNECTION_WAIT };
        let conn = pool.get_timeout(wait)?;
        if self.unreachable.swap(false, Ordering::Relaxed) {
            tracing::warn!("the database is reachable again");
        }
        Ok(conn)
    }
}

/// Told by the pool of every failed attempt to connect; says so once per outage, not per retry.
impl r2d2::HandleError<diesel::ConnectionError> for Reachability {
    fn handle_error(&self, error: diesel::ConnectionError) {
        if !self.unreachable.swap(true, Ordering::Relaxed) {
            tracing::error!("cannot reach the database: {error}");
        }
    }
}

impl std::fmt::Debug for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reachability").field("unreachable", &self.unreachable.load(Ordering::Relaxed)).finish()
    }
}

/// Reads go to a pool of connections; writes to a pool of their own: one connection on SQLite
/// (it has one writer anyway, and queueing here keeps tail latency down), half as many as reads
/// on PostgreSQL.
#[derive(Clone)]
pub struct Db {
    read: Pool,
    write: Pool,
    reachability: Reachability,
    backend: Backend,
    /// Counts committed invalidating writes, so a cache can refuse what was read before one.
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    listener: std::sync::Arc<std::sync::OnceLock<InvalidationListener>>,
    /// Other instances' caches, on PostgreSQL: told of every invalidating write.
    peers: Option<std::sync::Arc<peers::Peers>>,
    quick_reads: Arc<quick_reads::QuickReads>,
}

impl Db {
    pub fn connect(url: &str, pool_size: u32) -> DbResult<Self> {
        let location = DbLocation::parse(url)?;
        let backend = location.backend;
        let reachability = Reachability::default();
        let build = |size: u32, page_cache_kib: u32| {
            r2d2::Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .connection_timeout(CONNECTION_WAIT)
                // A SQLite connection is a file handle and does not go stale; testing it with a
                // query on every checkout cost a parse per request that reads the database.
                .test_on_check_out(backend == Backend::Postgres)
                .error_handler(Box::new(reachability.clone()))
                .build(Manager { location: location.clone(), page_cache_kib })
        };
        // Writes have connections of their own, so a storm of reads (a cold cache under load)
        // cannot hold up revocations, sign-ins or the usage writer. SQLite has one writer anyway.
        let write = build(
            if backend == Backend::Sqlite { 1 } else { (pool_size / 2).max(2) },
            connection::WRITER_PAGE_CACHE_KIB,
        )?;
        // Migrate before the read pool opens, so SQLite's file and WAL mode exist first.
        migrations::run_migrations(&mut *write.get()?)?;
        let read = build(pool_size, connection::READER_PAGE_CACHE_KIB)?;
        let peers = (backend == Backend::Postgres).then(|| std::sync::Arc::new(peers::Peers::new(&location.target)));
        Ok(Db {
            read,
            write,
            reachability,
            backend,
            generation: Default::default(),
            listener: Default::default(),
            peers,
            quick_reads: Arc::new(quick_reads::QuickReads::new(backend == Backend::Sqlite)),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        F: FnOnce(&mut DbConn) -> DbResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (pool, reachability) = (self.read.clone(), self.reachability.clone());
        tokio::task::spawn_blocking(move || f(&mut *reachability.connection(&pool)?))
            .await
            .map_err(|_| DbError::Cancelled)?
    }

    /// `read` for a read of a few indexed lookups that a request waits on (a token-cache miss):
    /// on SQLite it runs on the caller's thread, sparing the hand-off to the pool, while such
    /// reads stay quick and a connection is free at once (see `quick_reads`).
    pub async fn read_quick<T, F>(&self, f: F) -> DbResult<T>
    where
        F: FnOnce(&mut DbConn) -> DbResult<T> + Send + 'static,
        T: Send + 'static,
    {
        if self.quick_reads.in_place_now() {
            if let Some(mut conn) = self.read.try_get() {
                return self.quick_reads.watch(|| f(&mut conn));
            }
        }
        self.read(f).await
    }

    /// Runs `f` in one transaction on the writer. Once it is committed, what it recorded as
    /// invalidated is dropped from the caches (here and, on PostgreSQL, on every instance)
    /// before the caller sees the result.
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        F: FnOnce(&mut Write) -> DbResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write_blocking(f)).await.map_err(|_| DbError::Cancelled)?
    }

    /// Synchronous `write`, for the command line and background work.
    pub fn write_blocking<T>(&self, f: impl FnOnce(&mut Write) -> DbResult<T>) -> DbResult<T> {
        let mut recorded: Option<Invalidation> = None;
        let result = self.write_quietly(|conn| {
            let mut write = Write::new(conn);
            let value = f(&mut write);
            // Announced inside the transaction, so other instances hear of it exactly if it commits.
            let generation = match (&self.peers, write.invalidated().cloned(), &value) {
                (Some(peers), Some(what), Ok(_)) => Some(peers.announce(&mut write, &what)),
                _ => None,
            };
            recorded = write.into_invalidated();
            let generation = generation.transpose()?;
            Ok((value?, generation))
        });
        // A failed transaction may have been committed in part: assume the worst.
        let invalidation = match (&result, recorded) {
            (Err(_), Some(_)) => Some(Invalidation::All),
            (_, recorded) => recorded,
        };
        if let Some(what) = invalidation {
            self.apply_invalidation(&what);
        }
        let (value, generation) = result?;
        if let (Some(peers), Some(generation)) = (&self.peers, generation) {
            peers.wait_for_peers(self, generation)?;
        }
        Ok(value)
    }

    /// Drops from this instance's cache what a committed write made invalid: first the
    /// generation moves on (reads in flight must not be cached), then the listener is told.
    pub fn apply_invalidation(&self, what: &Invalidation) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(listener) = self.listener.get() {
            listener(what);
        }
    }

    /// The coherence of caches across instances, on PostgreSQL.
    pub fn peers(&self) -> Option<&std::sync::Arc<peers::Peers>> {
        self.peers.as_ref()
    }

    /// Registers the one listener told of invalidating writes (the token cache).
    pub fn on_invalidation(&self, listener: InvalidationListener) {
        let _ = self.listener.set(listener);
    }

    /// A write that cannot change whether any key is valid (usage counts), so caches stay.
    pub fn write_quietly<T>(&self, f: impl FnOnce(&mut DbConn) -> DbResult<T>) -> DbResult<T> {
        let mut conn = self.reachability.connection(&self.write)?;
        write_transaction(&mut conn, f)
    }

    /// Like `write_quietly`, but gives up (`Ok(None)`) if the writer is not free within `wait`.
    pub fn write_quietly_within<T>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut DbConn) -> DbResult<T>,
    ) -> DbResult<Option<T>> {
        let Ok(mut conn) = self.write.get_timeout(wait) else { return Ok(None) };
        write_transaction(&mut conn, f).map(Some)
    }

    /// How many writes that may have changed whether some key is valid this process has made.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn read_blocking<T>(&self, f: impl FnOnce(&mut DbConn) -> DbResult<T>) -> DbResult<T> {
        f(&mut *self.reachability.connection(&self.read)?)
    }
}

impl Db {
    /// Whether the database answers within `wait` (for a load balancer, which needs a quick
    /// "no" more than a slow one).
    pub async fn ping_within(&self, wait: Duration) -> DbResult<()> {
        let pool = self.read.clone();
        tokio::task::spawn_blocking(move || ping(&mut *pool.get_timeout(wait)?))
            .await
            .map_err(|_| DbError::Cancelled)?
    }
}

/// Text as the database can store it: PostgreSQL refuses NUL characters in text, and a client
/// can send them; they are dropped, so such input is answered like any other, never as a
/// database error.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A cheap query, for the health check.
pub fn ping(conn: &mut DbConn) -> DbResult<()> {
    conn.batch_execute("SELECT 1").map_err(DbError::from)
}

/// A write transaction. On SQLite it takes the write lock as it begins (`BEGIN IMMEDIATE`),
/// waiting for another process's writer as long as the busy timeout allows: a deferred one
/// that has read first cannot wait once it wants to write, and fails as busy at once when
/// another instance on the same file has written meanwhile.
fn write_transaction<T>(conn: &mut DbConn, f: impl FnOnce(&mut DbConn) -> DbResult<T>) -> DbResult<T> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    type Manager = <DbConn as diesel::Connection>::TransactionManager;
    let DbConn::Sqlite(sqlite) = conn else { return conn.transaction(f) };
    AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(e),
            Err(rollback) => Err(rollback.into()),
        },
    }
}
