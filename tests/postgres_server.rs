//! The application and its PostgreSQL server: connections over TLS (as to a database on another
//! host), and what people and load balancers are told while the server refuses connections.
//! These need PostgreSQL; `.ci/run` starts one with TLS and sets the variables read here.

mod common;

use common::*;
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use std::time::{Duration, Instant};
use userkeys::app::Application;
use userkeys::config::Config;

/// A server URL that connects over TLS: USERKEYS_TEST_POSTGRES_TLS, e.g.
/// postgres://tls_only@127.0.0.1:5433/postgres?sslmode=verify-full&sslrootcert=/tmp/ca.crt,
/// whose role the server refuses without TLS.
fn tls_server() -> Option<String> {
    match std::env::var("USERKEYS_TEST_POSTGRES_TLS") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: needs a PostgreSQL server with TLS (USERKEYS_TEST_POSTGRES_TLS); .ci/run provides it");
            None
        }
    }
}

/// `url` with its database replaced by `database` and its query's `sslmode`/`sslrootcert`
/// replaced by `params` (the others kept).
fn with_database(url: &str, database: &str, params: &[(&str, &str)]) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (server, _) = base.rsplit_once('/').expect("URL ends with /DATABASE");
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .expect("query string")
        .into_iter()
        .filter(|(name, _)| !params.iter().any(|(p, _)| p == name))
        .collect();
    pairs.extend(params.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let query = serde_urlencoded::to_string(&pairs).expect("query string");
    format!("{server}/{database}?{query}")
}

/// A fresh database on the TLS server, made through a TLS connection.
fn fresh_tls_database(server: &str) -> String {
    let name = format!("userkeys_tls_{}", userkeys::domain::secret::ClearSecret::token().expose());
    let mut admin = diesel::PgConnection::establish(server).expect("connect to the TLS test server over TLS");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
    name
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn the_app_runs_on_a_database_reached_over_verified_tls() {
    let Some(server) = tls_server() else { return };
    let database = fresh_tls_database(&server);
    let url = with_database(&server, &database, &[("sslmode", "verify-full")]);
    let app = spawn_app_with(Options { database_url: Some(url), ..Default::default() });
    app.create_user("alice", false);
    let login = app.ws_client(MOODLE_APP_UA).login("alice", PASSWORD, &[]).await;
    let token = login["token"].as_str().unwrap_or_else(|| panic!("a token over TLS: {login}")).to_owned();
    let info = app.ws_client(MOODLE_APP_UA).call(&token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(info["username"], "alice");

    // The server's own view: the application's connections to this database are encrypted.
    let mut admin = diesel::PgConnection::establish(&server).unwrap();
    let counted = |admin: &mut diesel::PgConnection, ssl: bool| {
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = '{database}' AND s.ssl = {ssl}"
        ))
        .get_result::<Count>(admin)
        .unwrap()
        .n
    };
    assert!(counted(&mut admin, true) > 0, "the app holds TLS connections to its database");
    assert_eq!(counted(&mut admin, false), 0, "and none without TLS");
}

#[tokio::test]
async fn the_app_does_not_start_on_a_connection_the_server_refuses_or_cannot_prove() {
    let Some(server) = tls_server() else { return };
    let database = fresh_tls_database(&server);
    let build = |url: String| {
        let mut config = Config::for_database(&url);
        config.bind = "127.0.0.1:0".into();
        config.db_pool_size = 2;
        Application::build(config).err().map(|e| format!("{e:#}"))
    };

    // Without TLS, this server turns the role away.
    let plain = build(with_database(&server, &database, &[("sslmode", "disable")]));
    let plain = plain.expect("the app must not start without TLS where the server requires it");
    assert!(plain.contains("no encryption") || plain.contains("pg_hba.conf"), "{plain}");

    // With TLS but trusting only the public certificate authorities, the self-signed server
    // certificate cannot be verified: no connection, rather than an unverified one.
    let unverified = build(with_database(&server, &database, &[("sslmode", "verify-full"), ("sslrootcert", "system")]));
    let unverified = unverified.expect("the app must not start when the server's certificate cannot be verified");
    assert!(unverified.contains("certificate"), "{unverified}");
}

/// While PostgreSQL refuses connections, a load balancer's health check and a person's page are
/// answered with a 503 at once (after the first failure shows the database is away), and
/// everything works again when it is back.
#[tokio::test]
async fn while_the_database_refuses_connections_answers_are_a_quick_503() {
    let Ok(server) = std::env::var("USERKEYS_TEST_POSTGRES") else {
        eprintln!("skipped: needs PostgreSQL (USERKEYS_TEST_POSTGRES); .ci/run provides it");
        return;
    };
    if server.is_empty() {
        eprintln!("skipped: needs PostgreSQL (USERKEYS_TEST_POSTGRES); .ci/run provides it");
        return;
    }
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    let database = app.database_url.rsplit_once('/').unwrap().1.to_owned();
    let mut admin = diesel::PgConnection::establish(&server).unwrap();
    let set_open = |admin: &mut diesel::PgConnection, open: bool| {
        admin.batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS {open}")).unwrap();
        if !open {
            diesel::sql_query(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
            ))
            .execute(admin)
            .unwrap();
        }
    };
    set_open(&mut admin, false);

    // The first request finds out (it may wait for the pool); the ones after it do not wait.
    let first = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(first.status(), 503);
    let started = Instant::now();
    let health = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    let page = browser.get("/user/managetoken.php").await;
    let elapsed = started.elapsed();
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.contains("temporarily unavailable"), "{}", page.body);
    assert!(
        elapsed < Duration::from_secs(5),
        "once the database is known to be away, answers do not wait for the pool's 10 s: {elapsed:?}"
    );
    let call = app.ws_client(MOODLE_APP_UA).login("alice", PASSWORD, &[]).await;
    assert!(call["errorcode"].is_string() && call.get("token").is_none(), "{call}");

    set_open(&mut admin, true);
    let mut status = 0;
    for _ in 0..100 {
        status = reqwest::get(app.url("/healthz")).await.unwrap().status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "healthy again once the database is back");
    assert!(browser.keys_page().await.contains("Your keys"));
}
