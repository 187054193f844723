//! Several stateless instances on one database: whatever one instance does, every other sees on
//! the very next request. Runs on SQLite and, in CI, on PostgreSQL.

mod common;

use common::*;

/// Several instances on one SQLite file must turn the token cache off; on PostgreSQL the caches
/// stay on and are kept coherent, which is what these tests then prove.
fn shared_database_cache() -> Box<dyn FnOnce(&mut userkeys::config::Config)> {
    let on_postgres = std::env::var("USERKEYS_TEST_POSTGRES").is_ok_and(|s| !s.is_empty());
    Box::new(move |c| c.token_cache = if on_postgres { "auto".into() } else { "off".into() })
}

fn first_instance() -> TestApp {
    spawn_app_with(Options { configure: shared_database_cache(), ..Default::default() })
}

fn second_instance(first: &TestApp) -> TestApp {
    spawn_app_with(Options {
        database_url: Some(first.database_url.clone()),
        configure: shared_database_cache(),
        ..Default::default()
    })
}

#[tokio::test]
async fn a_session_started_on_one_instance_works_on_another() {
    let a = first_instance();
    let b = second_instance(&a);
    a.create_user("alice", false);
    let browser = a.signed_in("alice", CHROME_UA).await;
    // The same cookie jar, pointed at the other instance.
    let on_b = Browser { base: b.base.clone(), client: browser.client.clone() };
    let page = on_b.keys_page().await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.contains("This browser"));
    // A form rendered by one instance is accepted by the other (the CSRF token is derived, not stored).
    let sesskey = page.hidden("sesskey").unwrap();
    let _phone = a.signed_in("alice", FIREFOX_UA).await;
    let after = Browser { base: a.base.clone(), client: browser.client.clone() }
        .post("/user/managetoken.php", &[("sesskey", &sesskey), ("action", "revokeothers")])
        .await;
    assert_eq!(
        after.flash().as_deref(),
        Some("Signed out everywhere else: one browser or app was signed out."),
        "{after}"
    );
}

#[tokio::test]
async fn a_token_revoked_on_one_instance_is_refused_by_the_other_at_once() {
    let a = first_instance();
    let b = second_instance(&a);
    let alice = a.create_user("alice", false);
    let (key, token) = a.key_for(alice).create();
    let on_b = b.ws_client(MOODLE_APP_UA);
    assert_eq!(on_b.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    let browser = a.signed_in("alice", CHROME_UA).await;
    let revoked = browser.confirm(&format!("action=revoke&key={key}")).await;
    assert!(revoked.flash().is_some_and(|f| f.starts_with("Revoked")), "{:?} {revoked}", revoked.flash());
    let refused = on_b.call(&token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(refused["errorcode"], "invalidtoken", "{refused}");
}

#[tokio::test]
async fn usage_from_two_instances_adds_up_exactly() {
    let a = first_instance();
    let b = second_instance(&a);
    let alice = a.create_user("alice", false);
    let (key, token) = a.key_for(alice).create();
    // Set up before the load: a write by the test during another instance's usage write can
    // find SQLite locked.
    let marker_user = a.create_user("marker", false);
    let (marker_key, marker) = a.key_for(marker_user).create();
    let mut calls = Vec::new();
    for (app, n) in [(&a, 40), (&b, 60)] {
        for _ in 0..n {
            let ws = app.ws_client(MOODLE_APP_UA);
            let token = token.clone();
            calls.push(tokio::spawn(async move { ws.call(&token, "core_webservice_get_site_info", &[]).await }));
        }
    }
    for call in calls {
        assert_eq!(call.await.unwrap()["username"], "alice");
    }
    assert_eq!(a.usage_hits(key, 100).await, 100, "nothing lost");
    // A later use of another key on each instance: once both are written and folded, so is
    // everything before them, and the count must not have moved.
    for app in [&a, &b] {
        assert_eq!(
            app.ws_client(MOODLE_APP_UA).call(&marker, "core_webservice_get_site_info", &[]).await["username"],
            "marker"
        );
    }
    assert!(a.usage_written_through(marker_key, 2).await, "both instances' writers wrote the marker");
    assert_eq!(a.with_db(|conn| userkeys::db::usage::total_hits(conn, key)), 100, "nothing doubled");
}

/// A fold of more merged rows than one transaction takes goes through pieces of the pending log,
/// whichever instance folds them: every use is counted once and the log ends empty.
#[tokio::test]
async fn a_fold_too_large_for_one_transaction_counts_every_use_once() {
    let a = first_instance();
    let alice = a.create_user("alice", false);
    let (key, _) = a.key_for(alice).create();
    // A second instance's recorder: 12,000 addresses, one use each, some used twice.
    let recorder = userkeys::usage::UsageRecorder::default();
    let at = userkeys::domain::time::now();
    for i in 0..12_000u32 {
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        recorder.record(key, MOODLE_APP_UA, ip, at);
        if i % 1000 == 0 {
            recorder.record(key, MOODLE_APP_UA, ip, at);
        }
    }
    assert_eq!(recorder.flush_blocking(&a.db).expect("flush"), 12_000);
    recorder.fold_blocking(&a.db, userkeys::usage::Fold::All).expect("fold");
    // The first instance's own folder may have taken the batch first: wait for it to finish.
    // The pending log is read before the usage: once it is empty, every fold has committed, so
    // the usage read after it holds them all (read the other way round, a piece folded between
    // the two reads would look lost).
    let mut folded = (false, 0, 0);
    for _ in 0..100 {
        folded = a.with_db(|conn| {
            use diesel::prelude::*;
            use userkeys::db::schema::key_usage;
            let waiting = userkeys::db::usage::backlog(conn)?;
            let hits: Vec<i64> =
                key_usage::table.filter(key_usage::key_id.eq(key)).select(key_usage::hits).load(&mut **conn)?;
            Ok((waiting.is_empty(), hits.len(), hits.iter().sum::<i64>()))
        });
        if folded.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (nothing_waits, rows, hits) = folded;
    assert!(nothing_waits, "every piece folded");
    assert_eq!((rows, hits), (12_000, 12_012), "one row per address, each use counted once");
    assert_eq!(a.with_db(|conn| userkeys::db::usage::total_hits(conn, key)), 12_012);
}

/// A fresh database (no app running on it) where Alice holds keys 1 to `keys` of `key_type`.
fn database_with_keys(dir: &std::path::Path, key_type: &str, keys: i64) -> userkeys::db::Db {
    let db = userkeys::db::Db::connect(&fresh_database_url(dir), 2).unwrap();
    let rows: Vec<String> =
        (1..=keys).map(|id| format!("({id}, 1, '{key_type}', 'key {id}', '2026-11-01 00:00:00')")).collect();
    db.write_blocking(|write| {
        use diesel::connection::SimpleConnection;
        let conn: &mut userkeys::db::DbConn = write;
        conn.batch_execute(&format!(
            "INSERT INTO users (id, username, fullname, email, password_hash, created_at) \
               VALUES (1, 'alice', 'Alice', 'a@example.org', 'x', '2026-11-01 00:00:00'); \
             INSERT INTO user_keys (id, user_id, key_type, name, created_at) VALUES {};",
            rows.join(", ")
        ))?;
        Ok(())
    })
    .unwrap();
    db
}

/// Request threads record into shards of their own, so a key used on two threads within one
/// flush is in that flush twice: the fold adds them up into one row holding every use.
#[test]
fn a_key_used_on_two_threads_at_once_is_one_row_with_every_use() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_with_keys(dir.path(), "webservice_token", 1);
    let recorder = userkeys::usage::UsageRecorder::default();
    let ip: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let at = userkeys::domain::time::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| (0..10).for_each(|_| recorder.record(1, MOODLE_APP_UA, ip, at)));
        }
    });
    recorder.flush_blocking(&db).unwrap();
    recorder.fold_blocking(&db, userkeys::usage::Fold::All).unwrap();
    let rows = db
        .read_blocking(|conn| {
            use diesel::prelude::*;
            use userkeys::db::schema::key_usage;
            Ok(key_usage::table.select((key_usage::key_id, key_usage::hits)).load::<(i64, i64)>(conn)?)
        })
        .unwrap();
    assert_eq!(rows, vec![(1, 20)]);
}

/// A busy site's fold merges what fits in memory and stores it sorted, then sweeps through all
/// such merges at once: a row used in every merge is upserted once per sweep, not once per merge.
#[test]
fn a_row_used_in_merge_after_merge_is_upserted_once_per_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_with_keys(dir.path(), "webservice_token", 1);
    // 30,000 addresses, each used once in each of three rounds; a round is 1,000 flushes, as
    // many as one merge takes, and makes more rows than one transaction upserts.
    const ADDRESSES: u32 = 30_000;
    let recorder = userkeys::usage::UsageRecorder::default();
    let at = userkeys::domain::time::now();
    for round in 0..3u32 {
        for flush in 0..1_000u32 {
            for i in 0..30 {
                let address = (flush * 30 + i + round * 7_001) % ADDRESSES;
                let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + address));
                recorder.record(1, MOODLE_APP_UA, ip, at);
            }
            assert_eq!(recorder.flush_blocking(&db).unwrap(), 30);
        }
    }
    let upserted = recorder.fold_blocking(&db, userkeys::usage::Fold::All).unwrap();
    assert_eq!(upserted, ADDRESSES as usize, "each row upserted once, though it was in three merges");
    let (waiting, rows) = db
        .read_blocking(|conn| {
            use diesel::prelude::*;
            use userkeys::db::schema::key_usage;
            let hits: Vec<i64> = key_usage::table.select(key_usage::hits).load(conn)?;
            Ok((userkeys::db::usage::backlog(conn)?, hits))
        })
        .unwrap();
    assert!(waiting.is_empty(), "nothing left to fold: {waiting:?}");
    assert_eq!(rows.len(), ADDRESSES as usize);
    assert!(rows.iter().all(|&hits| hits == 3), "every use counted once");
}

/// Merged pieces a crash left behind, one of them swept in part, are folded by the next fold,
/// with nothing to merge beside them: what a piece holds from its first unfolded key on, once.
#[test]
fn pieces_left_by_a_crash_mid_sweep_are_folded_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = database_with_keys(dir.path(), "rss", 4);
    let at = userkeys::domain::time::now();
    db.write_blocking(|write| {
        let conn: &mut userkeys::db::DbConn = write;
        let agent = userkeys::db::usage::agent_ids(conn, &["curl/8.5.0"])?["curl/8.5.0"];
        // A fold stores its merged pieces as records.
        let used = |key_id, hits| {
            userkeys::db::usage::UseRecord::from(userkeys::db::usage::KeyUse {
                key_id,
                agent_id: agent,
                ip: "198.51.100.7".parse().unwrap(),
                first_seen: at,
                last_seen: at,
                hits,
            })
        };
        // Two merges over keys 1–4; the sweep had folded the first piece up to key 2.
        userkeys::db::usage::append_merged(conn, &[used(1, 10), used(2, 20), used(3, 30), used(4, 40)])?;
        userkeys::db::usage::append_merged(conn, &[used(2, 2), used(4, 4)])?;
        let first = userkeys::db::usage::merged_pieces_from(conn, i64::MIN)?
            .into_iter()
            .find(|p| p.use_count == 4)
            .expect("the first piece");
        userkeys::db::usage::keep_merged_from(conn, first.id, 3, 2)?;
        Ok(())
    })
    .unwrap();
    let recorder = userkeys::usage::UsageRecorder::default();
    assert_eq!(recorder.fold_blocking(&db, userkeys::usage::Fold::WhenDue).unwrap(), 3, "keys 2, 3 and 4");
    let (waiting, hits) = db
        .read_blocking(|conn| {
            use diesel::prelude::*;
            use userkeys::db::schema::key_usage;
            let hits: Vec<(i64, i64)> =
                key_usage::table.select((key_usage::key_id, key_usage::hits)).order(key_usage::key_id).load(conn)?;
            Ok((userkeys::db::usage::backlog(conn)?, hits))
        })
        .unwrap();
    assert!(waiting.is_empty(), "{waiting:?}");
    assert_eq!(hits, vec![(2, 2), (3, 30), (4, 44)], "what was folded before the crash is not folded again");
}

#[tokio::test]
async fn revoking_while_in_use_ends_revoked_never_resurrected() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const TASKS: usize = 8;
    let a = first_instance();
    let b = second_instance(&a);
    let alice = a.create_user("alice", false);
    let (key, token) = a.key_for(alice).create();
    // Set up before the load: a write by the test during another instance's usage write can
    // find SQLite locked.
    let marker_user = a.create_user("marker", false);
    let (marker_key, marker) = a.key_for(marker_user).create();
    // Tasks served before the revocation; tasks refused a call sent after it returned.
    let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (revoked, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let mut load = Vec::new();
    for app in [&a, &b] {
        for _ in 0..TASKS / 2 {
            let ws = app.ws_client(MOODLE_APP_UA);
            let (token, served, refused, revoked, stop) =
                (token.clone(), served.clone(), refused.clone(), revoked.clone(), stop.clone());
            load.push(tokio::spawn(async move {
                let (mut was_served, mut saw_refusal, mut refused_after_revocation) = (false, false, false);
                let mut never_worked_again = true;
                while !stop.load(Ordering::SeqCst) {
                    let sent_after_revocation = revoked.load(Ordering::SeqCst);
                    let answer = ws.call(&token, "core_webservice_get_site_info", &[]).await;
                    if answer["errorcode"] == "invalidtoken" {
                        saw_refusal = true;
                        if sent_after_revocation && !refused_after_revocation {
                            refused_after_revocation = true;
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                    } else {
                        assert_eq!(answer["username"], "alice", "served or refused, nothing else: {answer}");
                        if saw_refusal {
                            never_worked_again = false;
                        }
                        if !was_served {
                            was_served = true;
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                (was_served, refused_after_revocation, never_worked_again)
            }));
        }
    }
    // Every task is being served when the key is revoked.
    assert!(wait_until(|| served.load(Ordering::SeqCst) == TASKS).await, "every task was served before the revocation");
    let registry = userkeys::keys::KeyTypeRegistry::with_core_types();
    a.with_db(|conn| {
        let revocation = userkeys::keys::ops::Revocation {
            user_id: alice,
            selection: userkeys::db::keys::Selection::One(key),
            scope: userkeys::keys::ops::Scope::Everything,
            actor: Default::default(),
            reason: "test".into(),
        };
        userkeys::keys::ops::revoke(conn, &registry, &revocation, userkeys::domain::time::now())
    });
    revoked.store(true, Ordering::SeqCst);
    let all_refused = wait_until(|| refused.load(Ordering::SeqCst) == TASKS).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        let (was_served, refused_after_revocation, never_worked_again) = task.await.unwrap();
        assert!(was_served, "the task used the token before the revocation");
        assert!(refused_after_revocation, "the task saw a refusal of a call sent after the revocation returned");
        assert!(never_worked_again, "once refused, a revoked token never worked again");
    }
    assert!(all_refused);
    // The load's usage is written after the revocation: wait for a later use of another key to be
    // written on both instances, and for the revoked key's own last use.
    for app in [&a, &b] {
        assert_eq!(
            app.ws_client(MOODLE_APP_UA).call(&marker, "core_webservice_get_site_info", &[]).await["username"],
            "marker"
        );
    }
    assert!(a.usage_written_through(marker_key, 2).await, "both instances' writers wrote the marker");
    assert!(wait_until(|| a.key_of(&token).last_used_at.is_some()).await, "the revoked key's last use was written");
    assert!(a.with_db(|conn| userkeys::db::usage::total_hits(conn, key)) >= TASKS as i64, "its uses were written");
    let row = a.key_of(&token);
    assert!(row.revoked_at.is_some(), "usage writes never un-revoke a key");
    assert_eq!(
        b.ws_client(MOODLE_APP_UA).call(&token, "core_webservice_get_site_info", &[]).await["errorcode"],
        "invalidtoken"
    );
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_across_instances() {
    let a = first_instance();
    let b = second_instance(&a);
    a.create_user("alice", false);
    for i in 0..userkeys::domain::throttle::PER_ACCOUNT_AND_ADDRESS {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(app.ws_client(MOODLE_APP_UA).login("alice", "wrong", &[]).await["errorcode"], "invalidlogin");
    }
    // Even the right password is refused now, on either instance.
    assert_eq!(b.ws_client(MOODLE_APP_UA).login("alice", PASSWORD, &[]).await["errorcode"], "invalidlogin");
    let page = a.browser(CHROME_UA).sign_in("alice", PASSWORD).await;
    assert_eq!(page.status, 429);
    assert!(page.contains("Too many failed sign-ins"), "{page}");
}

/// On PostgreSQL an instance trusts its token cache only while its link to the other instances
/// holds: when that connection is cut, the cache is dropped and requests go to the database.
#[tokio::test]
async fn an_instance_cut_off_from_the_others_stops_trusting_its_cache() {
    if !std::env::var("USERKEYS_TEST_POSTGRES").is_ok_and(|s| !s.is_empty()) {
        eprintln!("skipped: needs PostgreSQL (USERKEYS_TEST_POSTGRES); .ci/run provides it");
        return;
    }
    let a = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.token_cache = "auto".into();
            c.bench_endpoints = true;
        }),
        ..Default::default()
    });
    let alice = a.create_user("alice", false);
    let ws = a.ws_client(MOODLE_APP_UA);
    let (key, token) = a.key_for(alice).create();
    // Cached: a call counted as a hit. (Until the link to the other instances is up, or when a
    // read overlapped some write, a call reads the database and caches nothing.)
    let hits = || async {
        let stats: serde_json::Value =
            reqwest::get(format!("{}/bench/token-cache", a.base)).await.unwrap().json().await.unwrap();
        stats["hits"].as_u64().expect("a count of hits")
    };
    let mut cached = false;
    for _ in 0..50 {
        let before = hits().await;
        assert_eq!(ws.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
        if hits().await > before {
            cached = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(cached, "the token was cached");

    // A write behind the application's back, announced to no instance: the cache still answers,
    // which shows that it is in use.
    a.with_db(|conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query(format!("UPDATE user_keys SET revoked_at = now() WHERE id = {key}")).execute(&mut **conn)?;
        Ok(())
    });
    assert_eq!(ws.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");

    // Cut the instance's listening connection.
    a.with_db(|conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%cache_instances%'",
        )
        .execute(&mut **conn)?;
        Ok(())
    });
    let mut answer = serde_json::Value::Null;
    for _ in 0..100 {
        answer = ws.call(&token, "core_webservice_get_site_info", &[]).await;
        if answer["errorcode"] == "invalidtoken" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer["errorcode"], "invalidtoken", "the cache was dropped once the link was cut: {answer}");
}

/// An instance that stops (a rolling restart) writes the uses it was holding before it is gone,
/// and no longer listens; the other instance goes on.
#[tokio::test]
async fn a_stopped_instance_has_written_its_usage_and_no_longer_listens() {
    let a = first_instance();
    let b = second_instance(&a);
    let alice = a.create_user("alice", false);
    let (key, token) = a.key_for(alice).create();
    let on_b = b.ws_client(MOODLE_APP_UA);
    for _ in 0..5 {
        assert_eq!(on_b.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    }
    let port = b.port;
    drop(on_b);
    drop(b);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the stopped instance does not listen");
    assert_eq!(a.with_db(|conn| userkeys::db::usage::total_hits(conn, key)), 5, "its uses were written as it stopped");
    assert_eq!(
        a.ws_client(MOODLE_APP_UA).call(&token, "core_webservice_get_site_info", &[]).await["username"],
        "alice"
    );
}
