//! Seeds a database for the benchmark (bench/run.sh) and reads its results back.
//!
//!   bench_seed DATABASE_URL hot-path USERS KEYS TOKENS_FILE   users with tokens, tokens listed
//!   bench_seed DATABASE_URL pages EXTRA_KEYS                  one user with 1,000 keys and
//!                                                             100,000 usage rows, plus keys
//!                                                             up to the admin's million
//!   bench_seed DATABASE_URL hits                              total uses of web-service tokens

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use std::io::Write;
use userkeys::db::{Db, DbConn};
use userkeys::domain::password::hash_password;
use userkeys::domain::secret::SecretHash;

pub const PASSWORD: &str = "bench-password";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let db = Db::connect(&args[1], 1)?;
    userkeys::setup::seed_site(
        &db,
        &userkeys::moodle::functions::mobile_app_functions(),
        &userkeys::moodle::functions::admin_service_functions(),
    )?;
    match args[2].as_str() {
        "hot-path" => hot_path(&db, args[3].parse()?, args[4].parse()?, &args[5]),
        "pages" => pages(&db, args[3].parse()?),
        "hits" => {
            // Folded and still pending: a crash leaves uses in the pending log until the next start.
            let total: i64 = db.read_blocking(|conn| {
                use userkeys::db::schema::user_keys;
                let tokens: std::collections::HashSet<i64> = user_keys::table
                    .filter(user_keys::key_type.eq(userkeys::keys::WEBSERVICE_TOKEN))
                    .select(user_keys::id)
                    .load::<i64>(conn)?
                    .into_iter()
                    .collect();
                userkeys::db::usage::grand_total(conn, |key| tokens.contains(&key))
            })?;
            println!("{total}");
            Ok(())
        }
        other => anyhow::bail!("unknown mode {other}"),
    }
}

/// Statistics for the planner, as a running database has them (a bulk load leaves them stale).
/// On PostgreSQL also a vacuum and a checkpoint, so that neither autovacuum cleaning up the
/// rows the seed updated nor the checkpointer flushing its writes runs while the benchmark
/// measures.
fn analyze(db: &Db) -> anyhow::Result<()> {
    // Outside a transaction: VACUUM cannot run inside one.
    db.read_blocking(|conn| {
        if !matches!(conn, DbConn::Pg(_)) {
            // Sampled: the whole of ten million rows takes a minute and tells the planner nothing more.
            return Ok(conn.batch_execute("PRAGMA analysis_limit = 1000; ANALYZE")?);
        }
        conn.batch_execute("VACUUM ANALYZE")?;
        // Allowed to superusers and pg_checkpoint; without it the figures are only noisier.
        let _ = conn.batch_execute("CHECKPOINT");
        Ok(())
    })?;
    Ok(())
}

fn now_sql() -> String {
    userkeys::domain::time::now().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Rows in multi-row INSERTs of 500: the values are numbers and hex only, built here.
fn insert_rows(conn: &mut DbConn, head: &str, rows: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(500);
    let flush = |conn: &mut DbConn, batch: &mut Vec<String>| -> anyhow::Result<()> {
        if !batch.is_empty() {
            conn.batch_execute(&format!("{head} VALUES {}", batch.join(",")))?;
            batch.clear();
        }
        Ok(())
    };
    for row in rows {
        batch.push(row);
        if batch.len() == 500 {
            flush(conn, &mut batch)?;
        }
    }
    flush(conn, &mut batch)
}

/// Token `i` of the benchmark: 32 hex digits, "be4c" then `i * 7919` in 28 (bench/scale.sh's
/// load generator makes the same from `i`, rather than reading millions of them from a file).
fn bench_token(i: i64) -> String {
    format!("{:032x}", 0xbe4c_0000_0000_0000_0000_0000_0000_0000u128 + i as u128 * 7919)
}

/// Rows per transaction: SQLite's write-ahead log stays small between checkpoints.
const CHUNK: usize = 100_000;

/// `keys` tokens over `users` users, listed in `tokens_file` unless it is `-`. Ten million take
/// a couple of minutes and about 5 GB of SQLite.
///
/// The rows go in in the order of their secrets' hashes: then every index of `user_keys` (the
/// unique one on the hash above all, whose random order otherwise dirties most of its pages in
/// every transaction) and of `key_last_use` only ever grows at its end. The `k`-th row in that
/// order is user `k % users`'s, so neighbouring ids still belong to different people, as on a
/// real site; which token it holds does not matter to the load generator, which makes token `i`
/// from `i` alone.
fn hot_path(db: &Db, users: i64, keys: i64, tokens_file: &str) -> anyhow::Result<()> {
    let hash = hash_password(PASSWORD);
    let now = now_sql();
    let service: i64 = db.read_blocking(|conn| {
        Ok(userkeys::db::services::find_by_shortname(conn, "moodle_mobile_app")?.expect("seeded").id)
    })?;
    let map = |e: anyhow::Error| userkeys::db::DbError::Migration(e.to_string());
    let first: i64 = db.write_blocking(|write| {
        let conn: &mut DbConn = write;
        if !matches!(conn, DbConn::Pg(_)) {
            conn.batch_execute("PRAGMA cache_size = -200000")?;
        }
        use userkeys::db::schema::users;
        Ok(users::table.select(diesel::dsl::max(users::id)).first::<Option<i64>>(conn)?.unwrap_or(0) + 1)
    })?;
    let started = std::time::Instant::now();
    for from in (0..users).step_by(CHUNK) {
        db.write_blocking(|write| {
            insert_rows(
                write,
                "INSERT INTO users (username, fullname, email, password_hash, suspended, is_site_admin, created_at)",
                (from..(from + CHUNK as i64).min(users)).map(|i| {
                    format!("('bench{i}', 'Bench User {i}', 'bench{i}@example.org', '{hash}', FALSE, FALSE, '{now}')")
                }),
            )
            .map_err(map)
        })?;
    }
    let mut by_hash: Vec<([u8; 32], u32)> =
        (0..keys).map(|i| (SecretHash::digest(&bench_token(i)), i as u32)).collect();
    by_hash.sort_unstable();
    eprintln!("  {keys} tokens hashed and sorted, {:.0} s", started.elapsed().as_secs_f64());
    for (c, chunk) in by_hash.chunks(CHUNK).enumerate() {
        db.write_blocking(|write| {
            insert_rows(
                write,
                "INSERT INTO user_keys (user_id, key_type, name, secret_hash, service_id, device_id, created_at, created_by, valid_until)",
                chunk.iter().enumerate().map(|(n, (digest, i))| {
                    let user = first + (c * CHUNK + n) as i64 % users;
                    format!(
                        "({user}, 'webservice_token', 'Bench device {i}', '{}', {service}, 'id:bench{i}', '{now}', {user}, '2099-01-01 00:00:00')",
                        SecretHash::from_digest(digest).as_str()
                    )
                }),
            )
            .map_err(map)
        })?;
        // The app checkpoints SQLite's log on a thread of its own; the seed does it here, or
        // the log would grow by every page the ten million rows touch. Unsynced: a seed that a
        // crash left half-made is simply made again.
        db.read_blocking(|conn| {
            if !matches!(conn, DbConn::Pg(_)) {
                conn.batch_execute("PRAGMA synchronous = OFF; PRAGMA wal_checkpoint(TRUNCATE)")?;
            }
            Ok(())
        })?;
        let done = (c + 1) * CHUNK;
        if done % 1_000_000 == 0 {
            eprintln!("  {done} tokens, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    if tokens_file != "-" {
        let mut out = std::io::BufWriter::new(std::fs::File::create(tokens_file)?);
        for i in 0..keys {
            writeln!(out, "{}", bench_token(i))?;
        }
        out.flush()?;
    }
    analyze(db)?;
    println!("seeded {users} users and {keys} tokens in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn pages(db: &Db, extra_keys: i64) -> anyhow::Result<()> {
    let hash = hash_password(PASSWORD);
    let now = now_sql();
    db.write_blocking(|write| {
        let conn: &mut DbConn = write;
        let map = |e: anyhow::Error| userkeys::db::DbError::Migration(e.to_string());
        conn.batch_execute(&format!(
            "INSERT INTO users (username, fullname, email, password_hash, suspended, is_site_admin, created_at) VALUES \
             ('heavy', 'Heavy User', 'heavy@example.org', '{hash}', FALSE, FALSE, '{now}'), \
             ('benchadmin', 'Bench Admin', 'benchadmin@example.org', '{hash}', FALSE, TRUE, '{now}')"
        ))?;
        use userkeys::db::schema::{user_keys, users};
        let heavy: i64 = users::table.filter(users::username.eq("heavy")).select(users::id).first(conn)?;
        let before: i64 = user_keys::table.select(diesel::dsl::max(user_keys::id)).first::<Option<i64>>(conn)?.unwrap_or(0);
        insert_rows(
            conn,
            "INSERT INTO user_keys (user_id, key_type, name, secret_hash, created_at)",
            (0..1000).map(|i| {
                let kind = ["webservice_token", "rss", "calendar_export", "push_device"][i % 4];
                format!("({heavy}, '{kind}', 'Heavy key {i}', '{:064x}', '{now}')", 0xaa00_0000u64 + i as u64)
            }),
        )
        .map_err(map)?;
        // Each key's row of key_last_use exists (made by the insert); the seed fills them in.
        conn.batch_execute(&format!(
            "UPDATE key_last_use SET last_used_at = '{now}', last_used_ip = '203.0.113.' || CAST((key_id - {before} - 1) % 250 AS TEXT) \
             WHERE key_id > {before}"
        ))?;
        let agents = ["Google-Calendar-Importer", "NextCloud-News/1.0", "curl/8.5.0", "python-requests/2.28.2", "Feedly/1.0"];
        let agent_ids = userkeys::db::usage::agent_ids(conn, &agents)?;
        insert_rows(
            conn,
            "INSERT INTO key_usage (key_id, agent_id, ip, first_seen, last_seen, hits)",
            (0..100_000i64).map(|i| {
                let key = before + 1 + i % 1000;
                let agent = agent_ids[agents[(i / 1000 % 5) as usize]];
                format!("({key}, {agent}, '198.51.{}.{}', '{now}', '{now}', {})", i / 1000 % 250, i % 250 + (i / 250 % 4), 1 + i % 9)
            }),
        )
        .map_err(map)?;
        let users_count: i64 = users::table.count().get_result(conn)?;
        let before_extra: i64 = user_keys::table.select(diesel::dsl::max(user_keys::id)).first::<Option<i64>>(conn)?.unwrap_or(0);
        insert_rows(
            conn,
            "INSERT INTO user_keys (user_id, key_type, name, secret_hash, created_at)",
            (0..extra_keys).map(|i| {
                let user = 1 + i % users_count;
                format!("({user}, 'webservice_token', 'Old key {i}', '{:064x}', '{now}')", 0xcc00_0000_0000u64 + i as u64)
            }),
        )
        .map_err(map)?;
        // Two in three of them used from 192.0.2.1 some day of 2026, by key: (n % 10) + 1 is the month, (n % 28) + 1 the day.
        // SQLite keeps times as text; PostgreSQL reads the text as a timestamp.
        let as_time = if matches!(conn, DbConn::Pg(_)) { "::timestamp" } else { "" };
        conn.batch_execute(&format!(
            "UPDATE key_last_use SET last_used_ip = '192.0.2.1', last_used_ip_hex = '00000000000000000000ffffc0000201', \
               last_used_at = ('2026-' || SUBSTR(CAST(101 + (key_id - {before_extra} - 1) % 10 AS TEXT), 2, 2) \
                 || '-' || SUBSTR(CAST(101 + (key_id - {before_extra} - 1) % 28 AS TEXT), 2, 2) || ' 12:00:00'){as_time} \
             WHERE key_id > {before_extra} AND (key_id - {before_extra} - 1) % 3 <> 0"
        ))?;
        Ok(())
    })?;
    analyze(db)?;
    println!("seeded a user with 1000 keys and 100000 usage rows, and {extra_keys} more keys");
    Ok(())
}
