//! Test kit: starts the real application on a random port with a fresh database (SQLite in a
//! temporary folder, or a fresh PostgreSQL database when USERKEYS_TEST_POSTGRES is set), and
//! drives it over HTTP as a browser or a Moodle client would. Dropping a `TestApp` stops its
//! server gracefully, as a stopped instance stops. Keys a test needs before what it tests are
//! made by the builders (`app.key_for(user).of_type("rss").create()`, in `builders`).
#![allow(dead_code)]

pub mod builders;
pub mod smtp;

use diesel::connection::SimpleConnection;
use diesel::Connection;
use std::sync::Once;
use userkeys::accounts::{self, NewAccount};
use userkeys::app::Application;
use userkeys::config::Config;
use userkeys::db::Db;
use userkeys::keys::KeyType;

pub const CHROME_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0.0.0 Safari/537.36";
pub const FIREFOX_UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:142.0) Gecko/20100101 Firefox/142.0";
pub const PASSWORD: &str = "correct-horse-battery";

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub db: Db,
    pub database_url: String,
    /// The key types the app was started with, as keys made by the test kit are issued.
    pub registry: userkeys::keys::KeyTypeRegistry,
    server: Option<RunningServer>,
    /// Holds the SQLite file: kept until the server has stopped (`Drop`).
    dir: Option<tempfile::TempDir>,
}

/// The server's thread, told to stop when the `TestApp` is dropped.
struct RunningServer {
    stop: tokio::sync::oneshot::Sender<()>,
    /// What `run_until` returned, once the server has stopped and written its pending usage.
    stopped: std::sync::mpsc::Receiver<Result<(), String>>,
}

/// How long dropping a `TestApp` waits for its server to stop gracefully.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Drop for TestApp {
    /// Stops the server gracefully (answers in progress are finished, pending usage is written)
    /// and waits for it, up to `STOP_TIMEOUT`, before the temporary folder is removed.
    fn drop(&mut self) {
        let Some(server) = self.server.take() else { return };
        let _ = server.stop.send(());
        let outcome = server.stopped.recv_timeout(STOP_TIMEOUT);
        match outcome {
            Ok(Ok(())) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Still running: its database must not be removed under it.
                if let Some(dir) = self.dir.take() {
                    let _ = dir.keep();
                }
                eprintln!("the server at {} did not stop within {STOP_TIMEOUT:?}", self.base);
            }
            // A failure while stopping fails the test, unless the test is failing already.
            Ok(Err(e)) if !std::thread::panicking() => panic!("the server at {} failed: {e}", self.base),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) if !std::thread::panicking() => {
                panic!("the server at {} panicked", self.base)
            }
            _ => {}
        }
    }
}

pub struct Options {
    pub key_types: Vec<KeyType>,
    pub configure: Box<dyn FnOnce(&mut Config)>,
    /// Another instance's database, to run several instances on one database.
    pub database_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options { key_types: Vec::new(), configure: Box::new(|_| {}), database_url: None }
    }
}

pub fn spawn_app() -> TestApp {
    spawn_app_with(Options::default())
}

/// A fresh database URL: SQLite in `dir`, or a new database on the PostgreSQL server named by
/// USERKEYS_TEST_POSTGRES (e.g. postgres://postgres@127.0.0.1:5433/postgres).
pub fn fresh_database_url(dir: &std::path::Path) -> String {
    match std::env::var("USERKEYS_TEST_POSTGRES") {
        Ok(server) if !server.is_empty() => {
            let name = format!("userkeys_test_{}", userkeys::domain::secret::ClearSecret::token().expose());
            let mut admin = diesel::PgConnection::establish(&server).expect("connect to the test PostgreSQL server");
            admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
            let (base, _) = server.rsplit_once('/').expect("server URL ends with /DATABASE");
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}", dir.join("userkeys.sqlite3").display()),
    }
}

pub fn spawn_app_with(options: Options) -> TestApp {
    static LOG: Once = Once::new();
    LOG.call_once(|| {
        let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    });
    let dir = tempfile::tempdir().expect("temporary folder");
    let database_url = options.database_url.clone().unwrap_or_else(|| fresh_database_url(dir.path()));
    let mut config = Config::for_database(&database_url);
    config.bind = "127.0.0.1:0".into();
    config.workers = Some(2);
    config.db_pool_size = 4;
    (options.configure)(&mut config);
    let mut app = Application::build(config).expect("application builds");
    for key_type in options.key_types {
        app.register_key_type(key_type).expect("key type registers");
    }
    let port = app.port();
    let db = app.db().clone();
    let registry = app.registry().clone();
    let (stop, stop_signal) = tokio::sync::oneshot::channel::<()>();
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Stops when told, or when the sender is gone.
        let stop_signal = async move {
            let _ = stop_signal.await;
        };
        let result = actix_web::rt::System::new().block_on(app.run_until(stop_signal));
        let _ = stopped_tx.send(result.map_err(|e| format!("{e:#}")));
    });
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        db,
        database_url,
        registry,
        server: Some(RunningServer { stop, stopped }),
        dir: Some(dir),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn create_user(&self, username: &str, admin: bool) -> i64 {
        let account = NewAccount {
            username,
            fullname: &format!("{username} Example"),
            email: &format!("{username}@example.org"),
            password: PASSWORD,
            site_admin: admin,
        };
        self.db.write_blocking(|conn| Ok(accounts::create(conn, &account))).expect("database").expect("user is created")
    }

    pub fn browser(&self, user_agent: &str) -> Browser {
        Browser {
            base: self.base.clone(),
            client: reqwest::Client::builder().cookie_store(true).user_agent(user_agent).build().expect("http client"),
        }
    }

    /// A browser already signed in as `username`.
    pub async fn signed_in(&self, username: &str, user_agent: &str) -> Browser {
        let browser = self.browser(user_agent);
        let page = browser.sign_in(username, PASSWORD).await;
        assert!(page.contains("Your keys"), "sign-in as {username} failed: {page}");
        browser
    }

    /// Runs a closure on a database connection (to look at what the app wrote).
    pub fn with_db<T>(&self, f: impl FnOnce(&mut userkeys::db::Write) -> userkeys::db::DbResult<T>) -> T {
        self.db.write_blocking(f).expect("database")
    }
}

pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
}

pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
}

impl Page {
    pub fn contains(&self, s: &str) -> bool {
        self.body.contains(s)
    }

    /// The value of the first hidden input with this name.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_owned())
    }

    /// Ids of the keys listed on the self-service page, in order.
    pub fn key_ids(&self) -> Vec<i64> {
        self.body
            .match_indices("<li class=\"key\" id=\"key-")
            .filter_map(|(i, m)| {
                let rest = &self.body[i + m.len()..];
                rest[..rest.find('"')?].parse().ok()
            })
            .collect()
    }

    /// How many entries of the self-service page are of this kind ("Web session").
    pub fn entries_of_kind(&self, kind: &str) -> usize {
        self.body.matches(&format!("<span class=\"kind\">{kind}</span>")).count()
    }

    /// The flash message the page shows after an action, if any.
    pub fn flash(&self) -> Option<String> {
        let start = self.body.find("id=\"flash\">")? + "id=\"flash\">".len();
        let rest = &self.body[start..];
        Some(unescape(&rest[..rest.find("</p>")?]))
    }

    /// The HTML of one entry of the self-service page (a device or client with its keys), by
    /// the id of the key it is listed under.
    pub fn entry_block(&self, id: i64) -> Option<&str> {
        let start = self.body.find(&format!("id=\"entry-{id}\""))?;
        let rest = &self.body[start..];
        let end = [rest.find("<li class=\"entry\""), rest.find("</section>")]
            .into_iter()
            .flatten()
            .min()
            .map_or(self.body.len(), |e| start + e);
        Some(&self.body[start..end])
    }

    /// The HTML of one listed key, in its entry's details.
    pub fn key_block(&self, id: i64) -> Option<&str> {
        let start = self.body.find(&format!("id=\"key-{id}\""))?;
        let rest = &self.body[start..];
        let end = [rest.find("<li class=\"key\""), rest.find("</details>"), rest.find("</section>")]
            .into_iter()
            .flatten()
            .min()
            .map_or(self.body.len(), |e| start + e);
        Some(&self.body[start..end])
    }
}

/// Undoes the HTML escaping of the templates (tera escapes & < > " ' /).
pub fn unescape(s: &str) -> String {
    s.replace("&#x2F;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Page {
    /// The value of the input with this id, unescaped.
    /// The value of the input or text area with this id.
    pub fn input(&self, id: &str) -> Option<String> {
        let start = self.body.find(&format!("id=\"{id}\""))?;
        let tag_start = self.body[..start].rfind('<')?;
        let rest = &self.body[start..];
        if self.body[tag_start..].starts_with("<textarea") {
            let value = rest.split_once('>')?.1.split("</textarea>").next()?;
            return Some(unescape(value));
        }
        let value = rest.split("value=\"").nth(1)?.split('"').next()?;
        Some(unescape(value))
    }
}

impl std::fmt::Display for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}\n{}", self.status, self.url, self.body)
    }
}

impl Browser {
    pub async fn get(&self, path: &str) -> Page {
        let response = self.client.get(format!("{}{}", self.base, path)).send().await.expect("GET");
        Self::page(response).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let response = self.client.post(format!("{}{}", self.base, path)).form(form).send().await.expect("POST");
        Self::page(response).await
    }

    async fn page(response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let url =
            response.url().path().to_owned() + &response.url().query().map(|q| format!("?{q}")).unwrap_or_default();
        Page { status, url, body: response.text().await.expect("body") }
    }

    pub async fn sign_in(&self, username: &str, password: &str) -> Page {
        let form = self.get("/login/index.php").await;
        let token = form.hidden("logintoken").expect("sign-in form has a logintoken");
        self.post("/login/index.php", &[("username", username), ("password", password), ("logintoken", &token)]).await
    }

    pub async fn keys_page(&self) -> Page {
        self.get("/user/managetoken.php").await
    }

    /// Confirms and performs an action of the self-service page, as a person clicking through.
    pub async fn confirm(&self, query: &str) -> Page {
        let confirm = self.get(&format!("/user/managetoken.php?{query}")).await;
        assert_eq!(confirm.status, 200, "confirmation page: {confirm}");
        let mut fields: Vec<(String, String)> = Vec::new();
        for name in ["sesskey", "action", "key", "type"] {
            if let Some(v) = confirm.hidden(name) {
                fields.push((name.to_owned(), v));
            }
        }
        let form: Vec<(&str, &str)> = fields.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        self.post("/user/managetoken.php", &form).await
    }
}

pub const MOODLE_APP_UA: &str = "Mozilla/5.0 (Linux; Android 15; Pixel 8 Build/AP3A; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.0.0 Mobile Safari/537.36 MoodleMobile 4.4.0 (44004)";

/// A Moodle web-service client: form-encoded POSTs with its own user agent.
pub struct WsClient {
    pub base: String,
    pub client: reqwest::Client,
}

impl TestApp {
    pub fn ws_client(&self, user_agent: &str) -> WsClient {
        WsClient {
            base: self.base.clone(),
            client: reqwest::Client::builder().user_agent(user_agent).build().expect("http client"),
        }
    }

    /// Hits recorded for a key, once the batched usage has been written and folded, so that
    /// pages reading the folded usage (agents, addresses, days, alerts) show them too. Waits up
    /// to 10 s for `expected` hits and an empty pending log; a busy CI machine can be slow.
    pub async fn usage_hits(&self, key_id: i64, expected: i64) -> i64 {
        self.folded_through(key_id, expected).await.1
    }

    /// Waits (up to 10 s) until the background writers have written and folded every use recorded
    /// before the marker's: `marker_key` has at least `marker_uses` uses counted and the pending
    /// log is empty. Use a key of its own as the marker, used on every instance once the uses
    /// under test were answered: an instance's writer takes everything recorded so far at once,
    /// so what was recorded before the marker is written with it or before it. Returns whether
    /// that happened in time; then a count that is still right has not been doubled later.
    pub async fn usage_written_through(&self, marker_key: i64, marker_uses: i64) -> bool {
        self.folded_through(marker_key, marker_uses).await.0
    }

    /// Polls (up to 10 s) until `key_id` has at least `expected` uses counted and the pending log
    /// is empty; returns whether that happened and the key's count.
    async fn folded_through(&self, key_id: i64, expected: i64) -> (bool, i64) {
        let mut hits = 0;
        for _ in 0..100 {
            // The pending log is read first: once it is empty, every fold has committed.
            let pending;
            (pending, hits) = self.with_db(|conn| {
                let pending = userkeys::db::usage::backlog(conn)?;
                Ok((pending, userkeys::db::usage::total_hits(conn, key_id)?))
            });
            if hits >= expected && pending.is_empty() {
                return (true, hits);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        (false, hits)
    }

    /// The key row holding this clear secret.
    pub fn key_of(&self, secret: &str) -> userkeys::db::models::KeyRow {
        let hash = userkeys::domain::secret::SecretHash::of(secret);
        self.with_db(|conn| {
            let (key, _, _) = userkeys::db::keys::find_by_secret_hash(conn, hash.as_str())?.expect("key exists");
            userkeys::db::keys::find(conn, key.id)
        })
        .expect("key exists")
    }
}

impl WsClient {
    pub async fn post_json(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let response = self.client.post(format!("{}{}", self.base, path)).form(form).send().await.expect("POST");
        assert_eq!(response.status(), 200, "Moodle answers 200 even for errors");
        let text = response.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON expected, got: {text}"))
    }

    pub async fn login(&self, username: &str, password: &str, extra: &[(&str, &str)]) -> serde_json::Value {
        let mut form = vec![("username", username), ("password", password), ("service", "moodle_mobile_app")];
        form.extend_from_slice(extra);
        self.post_json("/login/token.php", &form).await
    }

    /// Signs in and returns the token, failing the test otherwise.
    pub async fn token(&self, username: &str, extra: &[(&str, &str)]) -> String {
        let answer = self.login(username, PASSWORD, extra).await;
        answer["token"].as_str().unwrap_or_else(|| panic!("no token: {answer}")).to_owned()
    }

    pub async fn call(&self, token: &str, function: &str, args: &[(&str, &str)]) -> serde_json::Value {
        let mut form = vec![("wstoken", token), ("wsfunction", function), ("moodlewsrestformat", "json")];
        form.extend_from_slice(args);
        self.post_json("/webservice/rest/server.php", &form).await
    }
}

impl TestApp {
    /// Gives a user a role (keymanager, auditor, helpdesk) as `userkeys role assign` does.
    pub fn assign_role(&self, user_id: i64, role: &str) {
        self.with_db(|conn| {
            let id = userkeys::db::roles::find(conn, role)?.expect("role exists");
            userkeys::db::roles::assign(conn, user_id, id)
        });
    }
}

/// Polls `condition` every 20 ms for up to 10 s; whether it came true. For waiting on what the
/// server or the test's own tasks have done, instead of sleeping for a guessed time.
pub async fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if condition() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
