//! SQLite's upkeep in a long-lived process: checkpointing the write-ahead log and keeping the
//! query planner's statistics fresh. PostgreSQL does both itself.

use super::{Backend, Db, DbError, DbResult};
use diesel::connection::SimpleConnection;
use std::time::Duration;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;

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
}
