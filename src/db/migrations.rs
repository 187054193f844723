//! The schema's migrations, embedded for each backend and run at start.

use super::{DbConn, DbError, DbResult};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

pub(super) fn run_migrations(conn: &mut DbConn) -> DbResult<()> {
    let result = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        DbConn::Pg(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| DbError::Migration(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::connection::{DbLocation, Manager};
    use crate::db::{keys, schema};
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    /// A database made before keys' last use moved to its own table: every key keeps its last
    /// use, and keys made afterwards get their row too. On SQLite, and on PostgreSQL when
    /// USERKEYS_TEST_POSTGRES names a server.
    #[test]
    fn upgrading_keeps_every_keys_last_use() {
        on_each_backend("upgrading_keeps_every_keys_last_use", upgrade_keeps_last_use);
    }

    /// A database made while merged pieces held their packed uses in the same row: each piece
    /// keeps its uses, and what it still holds (from its first unfolded key) is still waiting.
    #[test]
    fn upgrading_keeps_the_uses_of_merged_pieces() {
        on_each_backend("upgrading_keeps_the_uses_of_merged_pieces", upgrade_keeps_merged_pieces);
    }

    fn upgrade_keeps_merged_pieces(url: &str) {
        use crate::db::usage::{pack, KeyUse};
        let mut conn = migrated_until(url, "_merged_uses_apart");
        let agent = crate::db::usage::agent_ids(&mut conn, &["curl/8.5.0"]).unwrap()["curl/8.5.0"];
        let at = chrono::NaiveDateTime::parse_from_str("2026-12-04 08:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let used = |key_id, hits| KeyUse {
            key_id,
            agent_id: agent,
            ip: "192.0.2.7".parse().unwrap(),
            first_seen: at,
            last_seen: at,
            hits,
        };
        let packed = pack(&[used(1, 10), used(2, 20), used(3, 30), used(4, 40)]);
        // A piece of keys 1 to 4, folded by a sweep up to key 2.
        let insert = match &conn {
            DbConn::Sqlite(_) => {
                "INSERT INTO key_usage_merged (id, first_key, last_key, use_count, uses) VALUES (5, 3, 4, 2, ?)"
            }
            DbConn::Pg(_) => {
                "INSERT INTO key_usage_merged (id, first_key, last_key, use_count, uses) VALUES (5, 3, 4, 2, $1)"
            }
        };
        diesel::sql_query(insert).bind::<diesel::sql_types::Binary, _>(&packed).execute(&mut conn).unwrap();
        run_migrations(&mut conn).unwrap();
        let waiting: Vec<(i64, i64)> =
            crate::db::usage::pending_uses(&mut conn).unwrap().iter().map(|u| (u.key_id, u.hits)).collect();
        assert_eq!(waiting, vec![(3, 30), (4, 40)], "{url}");
        assert_eq!(crate::db::usage::merged_uses(&mut conn, &[5]).unwrap(), vec![(5, packed)], "{url}");
        let backlog = crate::db::usage::backlog(&mut conn).unwrap();
        assert_eq!((backlog.pieces, backlog.merged_uses), (1, 2), "{url}");
    }

    /// `check` on a fresh SQLite database, and on a fresh PostgreSQL one when
    /// USERKEYS_TEST_POSTGRES names a server.
    fn on_each_backend(test: &str, check: fn(&str)) {
        let dir = tempfile::tempdir().unwrap();
        check(&format!("sqlite://{}", dir.path().join("old.sqlite3").display()));
        match std::env::var("USERKEYS_TEST_POSTGRES") {
            Ok(server) if !server.is_empty() => {
                let name = format!("userkeys_upgrade_{}", crate::domain::secret::ClearSecret::token().expose());
                PgConnection::establish(&server).unwrap().batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
                check(&format!("{}/{name}", server.rsplit_once('/').unwrap().0));
            }
            _ => eprintln!("{test}: PostgreSQL skipped (USERKEYS_TEST_POSTGRES is not set)"),
        }
    }

    /// A connection to the database at `url`, migrated up to (not including) the migration whose
    /// name ends with `suffix`.
    fn migrated_until(url: &str, suffix: &str) -> DbConn {
        use diesel::migration::MigrationSource;
        use diesel::r2d2::ManageConnection;
        let mut conn = Manager {
            location: DbLocation::parse(url).unwrap(),
            page_cache_kib: crate::db::connection::READER_PAGE_CACHE_KIB,
        }
        .connect()
        .unwrap();
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
        let until = names.iter().position(|n| n.ends_with(suffix)).expect("the migration exists");
        for _ in 0..until {
            match &mut conn {
                DbConn::Sqlite(c) => c.run_next_migration(SQLITE_MIGRATIONS).map(|_| ()),
                DbConn::Pg(c) => c.run_next_migration(POSTGRES_MIGRATIONS).map(|_| ()),
            }
            .unwrap();
        }
        conn
    }

    fn upgrade_keeps_last_use(url: &str) {
        let mut conn = migrated_until(url, "_key_last_use");
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
