//! SQLite's upkeep in a long-lived process: checkpointing the write-ahead log and keeping the
//! query planner's statistics fresh. PostgreSQL does both itself.

use super::{Backend, Db, DbResult};
use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;
use std::time::Duration;

/// A log of this many pages (64 MB) or more is started over once it is all copied.
const RESTART_LOG_PAGES: i64 = 16_384;
/// How long a restart of the log waits for the writer and for readers before it gives up.
const RESTART_WAIT: Duration = Duration::from_millis(20);

impl Db {
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
                if let Err(e) = db.checkpoint() {
                    tracing::warn!(error = %e, "checkpointing the write-ahead log failed; will retry");
                }
            }
        })?;
        Ok(())
    }

    /// One checkpoint: a passive one, which copies what it can beside the writer and readers;
    /// then, if that copied the whole log and the log has grown big, a restart. SQLite starts
    /// the log over only when a write begins while no reader still reads from it, which under
    /// constant load (a miss is a read) seldom happens by itself: the log grew by gigabytes.
    /// The restart waits a moment for those readers (a read is short), holding new writes
    /// meanwhile, and costs little when the passive checkpoint left it almost nothing to copy.
    /// Returns the log's length, in pages, as the passive checkpoint found it.
    pub fn checkpoint(&self) -> DbResult<i64> {
        self.checkpoint_restarting_at(RESTART_LOG_PAGES)
    }

    fn checkpoint_restarting_at(&self, restart_at_pages: i64) -> DbResult<i64> {
        #[derive(diesel::QueryableByName)]
        struct Checkpoint {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            log: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            checkpointed: i64,
        }
        let mut conn = self.read.get()?;
        let passive: Checkpoint = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(&mut *conn)?;
        drop(conn);
        if passive.log >= restart_at_pages && passive.checkpointed == passive.log {
            // On the writer's own connection, so that this process's writes wait for it in the
            // pool: one that met SQLite's write lock taken midway through a transaction that
            // began by reading would fail at once ("database is locked"). Briefly: it waits for
            // readers while holding the writes. Not done now is done at a later tick.
            if let Ok(mut writer) = self.write.get_timeout(RESTART_WAIT) {
                let wait = |conn: &mut super::DbConn, wait: Duration| {
                    conn.batch_execute(&format!("PRAGMA busy_timeout = {}", wait.as_millis()))
                };
                wait(&mut writer, RESTART_WAIT)?;
                let restarted = writer.batch_execute("PRAGMA wal_checkpoint(RESTART)");
                wait(&mut writer, super::connection::BUSY_TIMEOUT)?;
                restarted?;
            }
        }
        Ok(passive.log)
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The log is started over once a checkpoint has copied it all, so the next commit writes
    /// at its beginning rather than growing it; a reader still reading from it delays that
    /// without failing the checkpoint or the writes.
    #[test]
    fn a_copied_log_starts_over_once_its_readers_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("wal.sqlite3").display()), 2).unwrap();
        let write_rows = |from: i64, to: i64| {
            db.write_quietly(|conn| {
                conn.batch_execute(&format!(
                    "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to}) \
                     INSERT INTO users (id, username, fullname, email, password_hash, created_at) \
                       SELECT i, 'user' || i, 'User ' || i, '', 'x', '2026-11-01 00:00:00' FROM n;"
                ))?;
                Ok(())
            })
            .unwrap()
        };
        write_rows(1, 5_000);
        // A read that began while the log held those rows, still going.
        let mut reader = db.read.get().unwrap();
        reader.batch_execute("BEGIN; SELECT count(*) FROM users;").unwrap();
        let grown = db.checkpoint_restarting_at(1).unwrap();
        assert!(grown > 50, "the inserts went to the log: {grown} pages");
        write_rows(5_001, 5_001);
        assert!(db.checkpoint_restarting_at(1).unwrap() > grown, "the reader kept the log from starting over");
        reader.batch_execute("COMMIT").unwrap();
        drop(reader);
        db.checkpoint_restarting_at(1).unwrap();
        write_rows(5_002, 5_002);
        let after = db.checkpoint_restarting_at(i64::MAX).unwrap();
        assert!(after < 10, "{after} pages in the log after it started over and one small commit");
    }
}
