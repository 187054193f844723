//! The binary as the README runs it: first start prints how to sign in, `user add` reads the
//! password from standard input, a graceful stop writes pending usage.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

fn userkeys(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_userkeys"));
    command.env("DATABASE_URL", database_url).env("USERKEYS_BIND", "127.0.0.1:0").env("RUST_LOG", "warn");
    command
}

/// Starts `serve` and reads its output until it says where it listens; returns the base URL
/// and every line printed before that.
fn start(database_url: &str) -> (Child, String, Vec<String>) {
    let mut child = userkeys(database_url).stdout(Stdio::piped()).spawn().expect("binary starts");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("read output") > 0, "server exited early: {lines:?}");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let base = rest.split_whitespace().next().unwrap().to_owned();
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            return (child, base, lines);
        }
        lines.push(line);
    }
}

fn stop_gracefully(child: &mut Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful stop exits cleanly: {exit:?}");
}

#[tokio::test]
async fn first_start_prints_how_to_sign_in_once_and_the_password_works() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::fresh_database_url(dir.path());
    let (mut child, base, lines) = start(&url);
    let password = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("password: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("no password printed: {lines:?}"));
    assert!(lines.iter().any(|l| l.contains("username: admin")));

    let browser = common::Browser {
        base: base.clone(),
        client: reqwest::Client::builder().cookie_store(true).user_agent(common::CHROME_UA).build().unwrap(),
    };
    let page = browser.sign_in("admin", &password).await;
    assert!(page.contains("Your keys"), "{page}");
    stop_gracefully(&mut child);

    // The session's use was written at shutdown; a second start prints no new password.
    let db = userkeys::db::Db::connect(&url, 1).unwrap();
    let sessions =
        db.read_blocking(|conn| userkeys::db::keys::active_for_user(conn, 1, userkeys::domain::time::now())).unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(db.read_blocking(|conn| userkeys::db::usage::total_hits(conn, sessions[0].id)).unwrap() >= 2);
    let (mut again, _, lines) = start(&url);
    assert!(!lines.iter().any(|l| l.contains("password:")), "{lines:?}");
    again.kill().unwrap();
    let _ = again.wait();
}

#[tokio::test]
async fn user_add_reads_the_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::fresh_database_url(dir.path());
    assert!(userkeys(&url).arg("migrate").status().unwrap().success());
    let mut child = userkeys(&url)
        .args(["user", "add", "Carol", "--password-stdin", "--fullname", "Carol Example"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a-long-password\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user carol"));

    let mut dup = userkeys(&url)
        .args(["user", "add", "carol", "--password-stdin"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    dup.stdin.take().unwrap().write_all(b"another-long-password\n").unwrap();
    let dup = dup.wait_with_output().unwrap();
    assert!(!dup.status.success(), "a second carol is refused");
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"), "{dup:?}");

    let assign = userkeys(&url).args(["role", "assign", "carol", "auditor"]).output().unwrap();
    assert!(assign.status.success(), "{assign:?}");
    let unknown = userkeys(&url).args(["role", "assign", "carol", "overlord"]).output().unwrap();
    assert!(!unknown.status.success());
    // The refusal names every role a site has, so the person can pick the right one.
    let told = String::from_utf8_lossy(&unknown.stderr);
    assert!(told.contains("keymanager, auditor, helpdesk, integrator"), "{told}");

    let (mut server, base, _) = start(&url);
    let browser = common::Browser { base, client: reqwest::Client::builder().cookie_store(true).build().unwrap() };
    assert!(browser.sign_in("carol", "a-long-password").await.contains("Your keys"));
    assert_eq!(browser.get("/admin/userkeys/audit.php").await.status, 200, "the auditor role was given");
    server.kill().unwrap();
    let _ = server.wait();
}

fn run_with_stdin(url: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child =
        userkeys(url).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `user passwd`, `user suspend` and `user unsuspend`, as an administrator with a shell uses
/// them: the new password works and the old sessions and tokens are gone, a suspension keeps the
/// person out until it is lifted, and the last active site admin cannot be suspended.
#[tokio::test]
async fn passwd_suspend_and_unsuspend_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::fresh_database_url(dir.path());
    assert!(userkeys(&url).arg("migrate").status().unwrap().success());
    assert!(run_with_stdin(&url, &["user", "add", "dave", "--password-stdin"], b"first-password\n").status.success());
    let db = userkeys::db::Db::connect(&url, 1).unwrap();
    let dave = db.read_blocking(|conn| userkeys::db::users::find_by_username(conn, "dave")).unwrap().unwrap();
    let registry = userkeys::keys::KeyTypeRegistry::with_core_types();
    let request = userkeys::keys::ops::KeyRequest {
        user_id: dave.id,
        key_type: userkeys::keys::WEB_SESSION.into(),
        name: "Firefox".into(),
        ..Default::default()
    };
    let session = db
        .write_blocking(|w| {
            userkeys::keys::ops::issue(w, &registry, request, &Default::default(), userkeys::domain::time::now())
        })
        .unwrap();

    let short = run_with_stdin(&url, &["user", "passwd", "dave", "--password-stdin"], b"short\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8 characters"), "{short:?}");
    let changed = run_with_stdin(&url, &["user", "passwd", "dave", "--password-stdin"], b"second-password\n");
    assert!(changed.status.success(), "{changed:?}");
    assert!(String::from_utf8_lossy(&changed.stdout).contains("1 sessions and tokens revoked"), "{changed:?}");
    let after = db.read_blocking(|conn| userkeys::db::users::find(conn, dave.id)).unwrap().unwrap();
    assert!(userkeys::domain::password::verify_password("second-password", &after.password_hash));
    assert!(!userkeys::domain::password::verify_password("first-password", &after.password_hash));
    let row = db.read_blocking(|conn| userkeys::db::keys::find(conn, session.id)).unwrap().unwrap();
    assert!(row.revoked_at.is_some(), "the session a password opened is gone");

    let suspended =
        |db: &userkeys::db::Db| db.read_blocking(|c| userkeys::db::users::find(c, dave.id)).unwrap().unwrap().suspended;
    let suspend = userkeys(&url).args(["user", "suspend", "dave"]).output().unwrap();
    assert!(suspend.status.success(), "{suspend:?}");
    assert!(suspended(&db));
    let unsuspend = userkeys(&url).args(["user", "unsuspend", "dave"]).output().unwrap();
    assert!(unsuspend.status.success(), "{unsuspend:?}");
    assert!(!suspended(&db));

    let root = run_with_stdin(&url, &["user", "add", "root", "--admin", "--password-stdin"], b"root-password\n");
    assert!(root.status.success());
    let last = userkeys(&url).args(["user", "suspend", "root"]).output().unwrap();
    assert!(!last.status.success(), "the only admin stays");
    assert!(String::from_utf8_lossy(&last.stderr).contains("only active administrator"), "{last:?}");
    let nobody = userkeys(&url).args(["user", "suspend", "nobody"]).output().unwrap();
    assert!(!nobody.status.success());
}

/// `kill -9` loses at most the last moments of usage: uses a second old are in the database,
/// and uses left in the pending log by a crash are folded by the next start.
#[tokio::test]
async fn usage_survives_kill_9_and_the_next_start_folds_what_was_pending() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::fresh_database_url(dir.path());
    let (mut child, base, lines) = start(&url);
    let password = lines.iter().find_map(|l| l.trim().strip_prefix("password: ").map(str::to_owned)).unwrap();
    let client = common::WsClient { base: base.clone(), client: reqwest::Client::new() };
    let answer = client.login("admin", &password, &[("deviceid", "crash-test")]).await;
    let token = answer["token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned();
    for _ in 0..7 {
        let info = client.call(&token, "core_webservice_get_site_info", &[]).await;
        assert_eq!(info["username"], "admin", "{info}");
    }
    // The background writer puts the uses in the database while the server runs…
    let db = userkeys::db::Db::connect(&url, 1).unwrap();
    let hash = userkeys::domain::secret::SecretHash::of(&token);
    let key = db.read_blocking(|conn| userkeys::db::keys::find_by_secret_hash(conn, hash.as_str())).unwrap().unwrap().0;
    let hits = || db.read_blocking(|conn| userkeys::db::usage::total_hits(conn, key.id)).unwrap();
    let mut written = 0;
    for _ in 0..100 {
        written = hits();
        if written >= 7 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(written, 7, "the uses were written while the server ran");
    child.kill().unwrap(); // SIGKILL: no graceful stop
    let _ = child.wait();
    // …and what was written survives the kill.
    assert_eq!(hits(), 7);

    // What a crash between an append and its fold leaves behind.
    let at = userkeys::domain::time::now();
    db.write_blocking(|conn| {
        let agent = userkeys::db::usage::agent_ids(conn, &["moodle-dl/2.3"])?["moodle-dl/2.3"];
        let left = userkeys::db::usage::KeyUse {
            key_id: key.id,
            agent_id: agent,
            ip: "198.51.100.7".parse().unwrap(),
            first_seen: at,
            last_seen: at,
            hits: 5,
        };
        userkeys::db::usage::append(conn, &[left])
    })
    .unwrap();
    let (mut again, _, _) = start(&url);
    let mut folded = (false, 0);
    for _ in 0..100 {
        folded = db
            .read_blocking(|conn| {
                let waiting = userkeys::db::usage::backlog(conn)?;
                let rows = userkeys::db::usage::summary_for_keys(conn, &[key.id])?;
                Ok((waiting.is_empty(), rows.iter().map(|r| r.hits).sum::<i64>()))
            })
            .unwrap();
        if folded.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(folded, (true, 12), "nothing waits to be folded and every use is in key_usage");
    stop_gracefully(&mut again);
}
