//! Connections: which backend a URL names, and how a connection to it is opened and set up.

use super::{DbError, DbResult};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

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

pub(super) struct Manager {
    pub(super) location: DbLocation,
    /// SQLite's page cache per connection, in KiB (SQLite's default is 2,000).
    pub(super) page_cache_kib: u32,
}

/// The one SQLite writer's page cache: every fold of usage upserts rows of thousands of keys
/// spread over the usage tables and their indexes, and with SQLite's default 2 MB each of those
/// pages was read again from the file. (At 10 million tokens, Zipf-spread, a larger writer
/// cache took validated calls from 13k to 16–18k a second; 16 MB keeps the process within its
/// token cache's budget plus 100 MB.)
pub(super) const WRITER_PAGE_CACHE_KIB: u32 = 16 * 1024;

/// A reader's page cache: there are many readers, and a read touches few pages. What a cache
/// miss of the token cache reads again and again is the top of each B-tree, a few dozen pages
/// even at 10,000,000 keys; the level below is thousands of pages, which neither size holds.
/// A lookup on the 10,000,000-key seed took 19.2-21.0 µs with 2 MB, 20.3-21.3 with 1 MB; the
/// seven readers a busy server opens then hold 7 MB less.
pub(super) const READER_PAGE_CACHE_KIB: u32 = 1_000;

/// How long a statement waits for SQLite's locks before it fails as busy.
pub(super) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How much of the write-ahead log's file is kept when the log starts over after a checkpoint.
/// Folds of usage at millions of keys write hundreds of megabytes of pages to the log between
/// two checkpoints; had the file been cut back (it was cut to 64 MB), every fold would grow it
/// again, and the filesystem zeroes each newly allocated block as a page is written into it —
/// a quarter of the folder's time at 10 million tokens. Kept, the file is written over in
/// place. A small site's log never grows near this, so it takes no more disk than before.
const WAL_KEPT_BYTES: u64 = 1 << 30;

impl r2d2::ManageConnection for Manager {
    type Connection = DbConn;
    type Error = ConnectionError;

    // Chosen here rather than by the derive's `establish`, which hides libpq's own message.
    fn connect(&self) -> Result<DbConn, ConnectionError> {
        match self.location.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.location.target)?;
                // The wait for locks is set first: `journal_mode` reads the file, and while another
                // process opens or closes the database that read can find it locked for a moment;
                // with no wait set yet, it fails at once as "database is locked".
                conn.batch_execute(&format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis()))
                    .and_then(|()| {
                        conn.batch_execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;",
                        )
                    })
                    .and_then(|()| {
                        conn.batch_execute(&format!(
                            "PRAGMA cache_size = -{}; PRAGMA journal_size_limit = {WAL_KEPT_BYTES}",
                            self.page_cache_kib
                        ))
                    })
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

    /// A connection opens while another process writes and closes its own: the command line
    /// beside a running server does that. Opening must wait out the other's locks, never fail
    /// as "database is locked" (it did about one open in twenty while `journal_mode` ran
    /// before any wait was set). The other process is this test run again, as the writer: in
    /// one process SQLite shares its locks between connections, and the race does not arise.
    #[test]
    fn opening_waits_for_another_process_writing() {
        const WRITER: &str = "USERKEYS_TEST_OPENING_WRITER";
        const TEST: &str = "db::connection::tests::opening_waits_for_another_process_writing";
        let manager = |path: &str| Manager { location: DbLocation::parse(path).unwrap(), page_cache_kib: 100 };
        if let Ok(path) = std::env::var(WRITER) {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(1_500);
            while std::time::Instant::now() < until {
                let mut conn = r2d2::ManageConnection::connect(&manager(&path)).unwrap();
                conn.batch_execute("INSERT INTO t VALUES (1)").unwrap();
            }
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("open.sqlite3").to_str().unwrap().to_owned();
        r2d2::ManageConnection::connect(&manager(&path)).unwrap().batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        let mut writer = std::process::Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--test-threads=1"])
            .env(WRITER, &path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Each open is dropped at once, as a command-line run's are: this process holds no
        // connection that would share its locks with the next.
        let mut failed = Vec::new();
        let mut opens = 0;
        let mut rows_written = 0;
        while opens < 1_000 || (rows_written < 100 && writer.try_wait().unwrap().is_none()) {
            match r2d2::ManageConnection::connect(&manager(&path)) {
                Ok(mut conn) => rows_written = count_rows(&mut conn),
                Err(e) => failed.push(e.to_string()),
            }
            opens += 1;
        }
        assert!(failed.is_empty(), "{} opens failed while another process wrote: {:?}", failed.len(), failed.first());
        assert!(writer.wait().unwrap().success(), "the writing process's own opens failed");
    }

    fn count_rows(conn: &mut DbConn) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query("SELECT count(*) AS n FROM t").get_result::<Count>(conn).map_or(0, |c| c.n)
    }

    /// The bundled SQLite is built as `.cargo/config.toml` says: statements keep their plan when
    /// a value is bound (else every `.first()` is parsed again each call), allocations take
    /// no process-wide lock, and each connection's page cache is its own.
    #[test]
    fn sqlite_is_compiled_with_the_projects_options() {
        #[derive(diesel::QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = diesel::sql_types::Text)]
            compile_options: String,
        }
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
        assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
    }
}
