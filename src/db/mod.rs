//! Persistence: one code path over SQLite (embedded default) and PostgreSQL, chosen by URL.

pub mod audit;
pub mod key_search;
pub mod key_types;
pub mod keys;
pub mod models;
pub mod peers;
pub mod roles;
pub mod schema;
pub mod services;
pub mod usage;
pub mod users;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::time::Duration;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] ConnectionError),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("unsupported DATABASE_URL “{0}”: use sqlite://FILE, a file path, or postgres://…")]
    UnsupportedUrl(String),
    #[error("the database task was cancelled")]
    Cancelled,
}

pub type DbResult<T> = Result<T, DbError>;

/// Which valid keys a committed write may have made invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Anything (a service or key type switched off, a service's functions changed).
    All,
    Keys(Vec<i64>),
    /// Every key of these users (suspended).
    Users(Vec<i64>),
}

impl Invalidation {
    fn merge(self, other: Invalidation) -> Invalidation {
        use Invalidation::*;
        match (self, other) {
            (Keys(mut a), Keys(b)) => {
                a.extend(b);
                Keys(a)
            }
            (Users(mut a), Users(b)) => {
                a.extend(b);
                Users(a)
            }
            _ => All,
        }
    }
}

thread_local! {
    static INVALIDATION: std::cell::RefCell<Option<Invalidation>> = const { std::cell::RefCell::new(None) };
}

/// Every query that can change whether an existing key is valid — revoking, expiring, suspending
/// its owner, switching its service or type off, changing what a service allows — calls this
/// inside its write, so that when the write commits, in-memory caches drop what it affected
/// before the writer answers. Forgetting it would let a cache serve a key no longer valid.
pub fn invalidates(what: Invalidation) {
    INVALIDATION.with(|cell| {
        let mut cell = cell.borrow_mut();
        *cell = Some(match cell.take() {
            Some(before) => before.merge(what),
            None => what,
        });
    });
}

/// Told of each committed invalidating write, before the writer's caller sees the result.
pub type InvalidationListener = std::sync::Arc<dyn Fn(&Invalidation) + Send + Sync>;

/// Where the database is, and which backend speaks to it.
#[derive(Clone, Debug)]
pub struct DbLocation {
    pub backend: Backend,
    /// A file path for SQLite, the full URL for PostgreSQL.
    pub target: String,
}

impl DbLocation {
    pub fn parse(url: &str) -> DbResult<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbLocation { backend: Backend::Postgres, target: url.to_owned() });
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        if path.is_empty() || path.contains("://") {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        }
        Ok(DbLocation { backend: Backend::Sqlite, target: path.to_owned() })
    }
}

struct Manager {
    location: DbLocation,
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConn;
    type Error = ConnectionError;

    // Chosen here rather than by the derive's `establish`, which hides libpq's own message.
    fn connect(&self) -> Result<DbConn, ConnectionError> {
        match self.location.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.location.target)?;
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConn::Sqlite(conn))
            }
            Backend::Postgres => PgConnection::establish(&self.location.target).map(DbConn::Pg),
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1").map_err(ConnectionError::CouldntSetupConfiguration)
    }

    fn has_broken(&self, _conn: &mut DbConn) -> bool {
        false
    }
}

type Pool = r2d2::Pool<Manager>;

/// Reads go to a pool of connections; writes to a pool of their own: one connection on SQLite
/// (it has one writer anyway, and queueing here keeps tail latency down), half as many as reads
/// on PostgreSQL.
#[derive(Clone)]
pub struct Db {
    read: Pool,
    write: Pool,
    backend: Backend,
    /// Counts committed invalidating writes, so a cache can refuse what was read before one.
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    listener: std::sync::Arc<std::sync::OnceLock<InvalidationListener>>,
    /// Other instances' caches, on PostgreSQL: told of every invalidating write.
    peers: Option<std::sync::Arc<peers::Peers>>,
}

impl Db {
    pub fn connect(url: &str, pool_size: u32) -> DbResult<Self> {
        let location = DbLocation::parse(url)?;
        let backend = location.backend;
        let build = |size: u32| {
            r2d2::Pool::builder()
                .max_size(size)
                .min_idle(Some(1))
                .connection_timeout(Duration::from_secs(10))
                .build(Manager { location: location.clone() })
        };
        // Writes have connections of their own, so a storm of reads (a cold cache under load)
        // cannot hold up revocations, sign-ins or the usage writer. SQLite has one writer anyway.
        let write = build(if backend == Backend::Sqlite { 1 } else { (pool_size / 2).max(2) })?;
        // Migrate before the read pool opens, so SQLite's file and WAL mode exist first.
        run_migrations(&mut *write.get()?)?;
        let read = build(pool_size)?;
        let peers = (backend == Backend::Postgres).then(|| std::sync::Arc::new(peers::Peers::new(&location.target)));
        Ok(Db { read, write, backend, generation: Default::default(), listener: Default::default(), peers })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn read<T, F>(&self, f: F) -> DbResult<T>
    where
        F: FnOnce(&mut DbConn) -> DbResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.read.clone();
        actix_web::web::block(move || f(&mut *pool.get()?)).await.map_err(|_| DbError::Cancelled)?
    }

    /// Runs `f` in one transaction on the writer; once it is committed, the write generation
    /// moves on (before the caller sees the result).
    pub async fn write<T, F>(&self, f: F) -> DbResult<T>
    where
        F: FnOnce(&mut DbConn) -> DbResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        actix_web::web::block(move || db.write_blocking(f)).await.map_err(|_| DbError::Cancelled)?
    }

    /// Synchronous access, for the command line and background work.
    pub fn write_blocking<T>(&self, f: impl FnOnce(&mut DbConn) -> DbResult<T>) -> DbResult<T> {
        INVALIDATION.with(|cell| cell.borrow_mut().take());
        let result = self.write_quietly(|conn| {
            let value = f(conn)?;
            // Announced inside the transaction, so other instances hear of it exactly if it commits.
            let pending = INVALIDATION.with(|cell| cell.borrow().clone());
            let generation = match (&self.peers, pending) {
                (Some(peers), Some(what)) => Some(peers.announce(conn, &what)?),
                _ => None,
            };
            Ok((value, generation))
        });
        let mut invalidation = INVALIDATION.with(|cell| cell.borrow_mut().take());
        // A failed transaction may have been committed in part: assume the worst.
        if result.is_err() && invalidation.is_some() {
            invalidation = Some(Invalidation::All);
        }
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

    /// SQLite: copies the write-ahead log into the database file twice a second, on its own
    /// thread and connection. Commits never do it themselves (`wal_autocheckpoint = 0`): a
    /// checkpoint syncs the file to disk, and the one writer would wait for the disk while
    /// appends of usage and revocations queue behind it. A passive checkpoint runs beside
    /// the writer. The thread ends with the process.
    ///
    /// The same thread keeps the query planner's statistics fresh: every table at start, then
    /// once an hour those that have changed a lot.
    pub fn spawn_checkpointer(&self) -> std::io::Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let db = self.clone();
        std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
            let mut analysed: Option<std::time::Instant> = None;
            loop {
                if analysed.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                    if let Err(e) = db.refresh_planner_statistics(analysed.is_none()) {
                        tracing::warn!(error = %e, "refreshing the query planner's statistics failed; will retry");
                    }
                    analysed = Some(std::time::Instant::now());
                }
                std::thread::sleep(Duration::from_millis(500));
                let done =
                    db.read.get().map_err(DbError::from).and_then(|mut conn| {
                        conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)").map_err(DbError::from)
                    });
                if let Err(e) = done {
                    tracing::warn!(error = %e, "checkpointing the write-ahead log failed; will retry");
                }
            }
        })?;
        Ok(())
    }

    /// SQLite: `PRAGMA optimize`, which runs ANALYZE, within a bounded number of rows per index,
    /// on tables whose statistics have gone stale; with `every_table`, on every table, as
    /// SQLite advises when a long-lived process starts. Without statistics the planner guesses
    /// from the schema alone, however large the tables grow. PostgreSQL's autovacuum does this.
    pub fn refresh_planner_statistics(&self, every_table: bool) -> DbResult<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        // 0x10000 every table, 0x10 a bounded analysis, 0x2 analyse.
        let pragma = if every_table { "PRAGMA optimize = 0x10012" } else { "PRAGMA optimize" };
        let started = std::time::Instant::now();
        self.write.get()?.batch_execute(pragma)?;
        tracing::debug!(every_table, ms = started.elapsed().as_millis() as u64, "planner statistics refreshed");
        Ok(())
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
        let mut conn = self.write.get()?;
        (*conn).transaction(f)
    }

    /// Like `write_quietly`, but gives up (`Ok(None)`) if the writer is not free within `wait`.
    pub fn write_quietly_within<T>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut DbConn) -> DbResult<T>,
    ) -> DbResult<Option<T>> {
        let Ok(mut conn) = self.write.get_timeout(wait) else { return Ok(None) };
        (*conn).transaction(f).map(Some)
    }

    /// How many writes that may have changed whether some key is valid this process has made.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn read_blocking<T>(&self, f: impl FnOnce(&mut DbConn) -> DbResult<T>) -> DbResult<T> {
        f(&mut *self.read.get()?)
    }
}

fn run_migrations(conn: &mut DbConn) -> DbResult<()> {
    let result = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        DbConn::Pg(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| DbError::Migration(e.to_string()))
}

/// A cheap query, for the health check.
pub fn ping(conn: &mut DbConn) -> DbResult<()> {
    conn.batch_execute("SELECT 1").map_err(DbError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_picks_backend() {
        assert_eq!(DbLocation::parse("postgres://u@h/db").unwrap().backend, Backend::Postgres);
        let l = DbLocation::parse("sqlite://data/keys.db").unwrap();
        assert_eq!((l.backend, l.target.as_str()), (Backend::Sqlite, "data/keys.db"));
        assert_eq!(DbLocation::parse("keys.db").unwrap().target, "keys.db");
        assert!(DbLocation::parse("mysql://x").is_err());
    }

    /// A database made before keys' last use moved to its own table: every key keeps its last
    /// use, and keys made afterwards get their row too. On SQLite, and on PostgreSQL when
    /// USERKEYS_TEST_POSTGRES names a server.
    #[test]
    fn upgrading_keeps_every_keys_last_use() {
        let dir = tempfile::tempdir().unwrap();
        upgrade_keeps_last_use(&format!("sqlite://{}", dir.path().join("old.sqlite3").display()));
        match std::env::var("USERKEYS_TEST_POSTGRES") {
            Ok(server) if !server.is_empty() => {
                let name = format!("userkeys_upgrade_{}", crate::domain::secret::ClearSecret::token().expose());
                PgConnection::establish(&server).unwrap().batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
                upgrade_keeps_last_use(&format!("{}/{name}", server.rsplit_once('/').unwrap().0));
            }
            _ => {
                eprintln!("upgrading_keeps_every_keys_last_use: PostgreSQL skipped (USERKEYS_TEST_POSTGRES is not set)")
            }
        }
    }

    /// A database that grew without statistics gets them, so the planner knows its sizes.
    #[test]
    fn planner_statistics_are_gathered_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("stats.sqlite3").display()), 2).unwrap();
        let stats = |db: &Db| -> Vec<String> {
            #[derive(diesel::QueryableByName)]
            struct Stat {
                #[diesel(sql_type = diesel::sql_types::Text)]
                tbl: String,
            }
            let rows: DbResult<Vec<Stat>> = db.read_blocking(|conn| {
                Ok(diesel::sql_query("SELECT DISTINCT tbl FROM sqlite_stat1 ORDER BY tbl").load(conn)?)
            });
            rows.map(|r| r.into_iter().map(|s| s.tbl).collect()).unwrap_or_default()
        };
        assert!(!stats(&db).contains(&"user_keys".to_owned()), "a fresh database has no statistics");
        db.write_quietly(|conn| {
            conn.batch_execute(
                "INSERT INTO users (id, username, fullname, email, password_hash, created_at) \
                   VALUES (1, 'alice', 'Alice', 'a@example.org', 'x', '2026-11-01 00:00:00'); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
                 INSERT INTO user_keys (user_id, key_type, name, created_at) \
                   SELECT 1, 'rss', 'key ' || i, '2026-11-01 00:00:00' FROM n;",
            )?;
            Ok(())
        })
        .unwrap();
        db.refresh_planner_statistics(true).unwrap();
        let tables = stats(&db);
        assert!(tables.contains(&"user_keys".to_owned()), "{tables:?}");
        assert!(tables.contains(&"key_last_use".to_owned()), "{tables:?}");
        db.refresh_planner_statistics(false).unwrap();
    }

    fn upgrade_keeps_last_use(url: &str) {
        use diesel::migration::MigrationSource;
        use diesel::r2d2::ManageConnection;
        let mut conn = Manager { location: DbLocation::parse(url).unwrap() }.connect().unwrap();
        let mut names: Vec<String> = match &conn {
            DbConn::Sqlite(_) => MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .unwrap()
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            DbConn::Pg(_) => MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
                .unwrap()
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        };
        names.sort();
        let moved = names.iter().position(|n| n.ends_with("_key_last_use")).expect("the migration exists");
        for _ in 0..moved {
            match &mut conn {
                DbConn::Sqlite(c) => c.run_next_migration(SQLITE_MIGRATIONS).map(|_| ()),
                DbConn::Pg(c) => c.run_next_migration(POSTGRES_MIGRATIONS).map(|_| ()),
            }
            .unwrap();
        }
        conn.batch_execute(
            "INSERT INTO users (id, username, fullname, email, password_hash, created_at) \
               VALUES (1, 'alice', 'Alice', 'a@example.org', 'x', '2026-11-01 00:00:00'); \
             INSERT INTO user_keys (id, user_id, key_type, name, created_at, last_used_at, last_used_ip, last_used_ip_hex) VALUES \
               (7, 1, 'rss', 'used', '2026-11-01 00:00:00', '2026-11-30 08:00:00', '192.0.2.7', '00000000000000000000ffffc0000207'), \
               (8, 1, 'rss', 'never used', '2026-11-01 00:00:00', NULL, NULL, NULL);",
        )
        .unwrap();
        run_migrations(&mut conn).unwrap();
        conn.batch_execute("INSERT INTO user_keys (id, user_id, key_type, name, created_at) VALUES (9, 1, 'rss', 'new', '2026-12-01 00:00:00')").unwrap();
        use schema::key_last_use::dsl::*;
        let rows: Vec<(i64, Option<chrono::NaiveDateTime>, Option<String>, Option<String>)> = key_last_use
            .select((key_id, last_used_at, last_used_ip, last_used_ip_hex))
            .order(key_id)
            .load(&mut conn)
            .unwrap();
        let at = chrono::NaiveDateTime::parse_from_str("2026-11-30 08:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            rows,
            vec![
                (7, Some(at), Some("192.0.2.7".into()), Some("00000000000000000000ffffc0000207".into())),
                (8, None, None, None),
                (9, None, None, None),
            ],
            "{url}"
        );
        let found = keys::find(&mut conn, 7).unwrap().expect("the used key is still there");
        assert_eq!((found.last_used_at, found.last_used_ip.as_deref()), (Some(at), Some("192.0.2.7")));
    }
}
