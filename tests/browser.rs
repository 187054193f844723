//! The keys page in a real headless Chromium, used as a person uses it: sign in, see the keys,
//! revoke one, see it gone. Needs Debian's `chromium` and `chromium-driver`; without them the
//! test says it was skipped (and fails when USERKEYS_REQUIRE_BROWSER=1, as in CI).

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Driver {
    process: Child,
    _profile: tempfile::TempDir,
    client: Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn find(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(program)).find(|p| p.exists())
}

/// Starts chromedriver and a headless Chromium session, or None (with the reason) if absent.
async fn start_browser() -> Option<Driver> {
    let (Some(driver), Some(chromium)) = (find("chromedriver"), find("chromium")) else {
        let required = std::env::var("USERKEYS_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "chromium and chromedriver are required (USERKEYS_REQUIRE_BROWSER=1) but not installed");
        eprintln!("SKIPPED: headless browser test — install Debian's chromium and chromium-driver to run it");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let process = Command::new(driver)
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1100,1400",
                     format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let mut last_error = None;
    for _ in 0..50 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return Some(Driver { process, _profile: profile, client }),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not start a Chromium session: {last_error:?}");
}

async fn fill(client: &Client, id: &str, value: &str) {
    client.find(Locator::Id(id)).await.unwrap().send_keys(value).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

#[tokio::test]
async fn a_person_signs_in_sees_their_keys_revokes_one_and_it_is_gone() {
    let Some(driver) = start_browser().await else { return };
    let browser = &driver.client;
    let app = spawn_app();
    app.create_user("alice", false);
    // A second place alice is signed in, and her phone's app token.
    let other = app.signed_in("alice", FIREFOX_UA).await;
    let phone_token = app.ws_client(MOODLE_APP_UA).token("alice", &[]).await;
    let phone_key = app.key_of(&phone_token).id;

    browser.goto(&app.url("/")).await.unwrap();
    fill(browser, "username", "alice").await;
    fill(browser, "password", PASSWORD).await;
    click(browser, "#loginbtn").await;
    browser.wait().for_element(Locator::Id("revokeothers")).await.unwrap();
    assert!(browser.current_url().await.unwrap().path().ends_with("/user/managetoken.php"));
    let source = browser.source().await.unwrap();
    assert!(source.contains("Firefox 142 · macOS") && source.contains("Moodle app 4.4 · Android 15"), "{source}");
    assert!(source.contains("This browser"));
    if let Ok(png) = browser.screenshot().await {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let _ = std::fs::write(dir.join("keys-page.png"), png);
    }

    // Details are one click away: the phone's key, its usage chart, a field to rename it.
    let rename_field = format!("name-{phone_key}");
    let field = browser.find(Locator::Id(&rename_field)).await.unwrap();
    assert!(!field.is_displayed().await.unwrap(), "details start closed");
    click(browser, &format!("#entry-{phone_key} details.more summary")).await;
    assert!(field.is_displayed().await.unwrap(), "one click shows them");
    assert!(browser
        .find(Locator::Css(&format!("#key-{phone_key} svg.usage")))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    field.clear().await.unwrap();
    field.send_keys("Alice's Pixel").await.unwrap();
    click(browser, &format!("#key-{phone_key} form.rename button")).await;
    browser.wait().for_element(Locator::Id("flash")).await.unwrap();
    let source = browser.source().await.unwrap();
    assert!(source.contains("Renamed to “Alice's Pixel”."), "{source}");
    assert!(source.contains("<h3 class=\"entryname\">Alice's Pixel"), "the entry carries the new name");

    click(browser, &format!("#entry-{phone_key} a.revoke")).await;
    browser.wait().for_element(Locator::Id("confirm")).await.unwrap();
    assert!(browser.source().await.unwrap().contains("Whatever uses it will stop working"));
    click(browser, "#confirm").await;
    browser.wait().for_element(Locator::Id("flash")).await.unwrap();
    let source = browser.source().await.unwrap();
    assert!(source.contains("Revoked “Alice's Pixel”"), "the message names what was revoked: {source}");
    assert!(!source.contains(&format!("id=\"key-{phone_key}\"")), "the revoked key is gone from the page");
    browser.refresh().await.unwrap();
    assert!(!browser.source().await.unwrap().contains("id=\"flash\""), "a reload does not repeat the message");
    let refused = app.ws_client(MOODLE_APP_UA).call(&phone_token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(refused["errorcode"], "invalidtoken");

    // "Sign out everywhere else" ends the Firefox session too, and this browser stays in.
    click(browser, "#revokeothers").await;
    browser.wait().for_element(Locator::Id("confirm")).await.unwrap();
    click(browser, "#confirm").await;
    browser.wait().for_element(Locator::Id("flash")).await.unwrap();
    assert!(browser.source().await.unwrap().contains("Signed out everywhere else: one browser or app was signed out."));
    assert!(other.keys_page().await.url.starts_with("/login/index.php"));
    driver.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn an_admin_forces_a_logout_and_the_victims_session_and_token_are_refused() {
    let Some(driver) = start_browser().await else { return };
    let browser = &driver.client;
    let app = spawn_app();
    app.create_user("root", true);
    let victim = app.create_user("victim", false);
    let victim_browser = app.signed_in("victim", FIREFOX_UA).await;
    let (_, victim_token) = app.key_for(victim).create();

    browser.goto(&app.url("/login/index.php")).await.unwrap();
    fill(browser, "username", "root").await;
    fill(browser, "password", PASSWORD).await;
    click(browser, "#loginbtn").await;
    browser.wait().for_element(Locator::Css("a[href='/admin/userkeys/index.php']")).await.unwrap();
    click(browser, "a[href='/admin/userkeys/index.php']").await;
    browser.wait().for_element(Locator::Id("filters")).await.unwrap();
    browser.goto(&app.url(&format!("/admin/userkeys/user.php?id={victim}"))).await.unwrap();
    click(browser, "#forcelogout").await;
    browser.wait().for_element(Locator::Id("reason")).await.unwrap();
    fill(browser, "reason", "stolen phone").await;
    click(browser, "#confirm").await;
    browser.wait().for_element(Locator::Css("p.notice")).await.unwrap();
    assert!(browser.source().await.unwrap().contains("was signed out everywhere"));

    assert!(victim_browser.keys_page().await.url.starts_with("/login/index.php"), "the web session is refused");
    let refused = app.ws_client(MOODLE_APP_UA).call(&victim_token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(refused["errorcode"], "invalidtoken", "the app's token is refused");
    driver.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn the_app_signs_in_through_the_browser_and_gets_its_token_back() {
    let Some(driver) = start_browser().await else { return };
    let browser = &driver.client;
    let app = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.wwwroot = Some("https://moodle.example.org".into());
            c.app_login = "browser".into();
        }),
        ..Default::default()
    });
    let alice = app.create_user("alice", false);
    let launch = "/admin/tool/mobile/launch.php?service=moodle_mobile_app&passport=123.456&urlscheme=moodlemobile";
    browser.goto(&app.url(launch)).await.unwrap();
    browser.wait().for_element(Locator::Id("loginbtn")).await.unwrap();
    fill(browser, "username", "alice").await;
    fill(browser, "password", PASSWORD).await;
    click(browser, "#loginbtn").await;

    // Signed in, the browser goes back to launch.php, which issues the app a token and sends
    // the browser on to `moodlemobile://` (which headless Chromium cannot open, so it stays).
    let alice_tokens = |app: &TestApp| {
        app.with_db(|conn| {
            let keys = userkeys::db::keys::active_for_user(conn, alice, userkeys::domain::time::now())?;
            Ok(keys.into_iter().filter(|k| k.key_type == "webservice_token").count())
        })
    };
    let mut issued = 0;
    for _ in 0..200 {
        issued = alice_tokens(&app);
        if issued > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(issued, 1, "the browser's return to launch.php issued the app its token");

    // What the browser was sent on to, read by making its request again with its own cookie.
    let cookies = browser.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "MoodleSession").expect("the browser is signed in");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = http
        .get(app.url(launch))
        .header("Cookie", format!("MoodleSession={}", session.value()))
        .header("User-Agent", CHROME_UA)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    // As the app reads it (CoreCustomURLSchemesProvider, validateBrowserSSOLogin).
    let encoded = location.strip_prefix("moodlemobile://token=").unwrap_or_else(|| panic!("{location}"));
    use base64::Engine;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
    let parts: Vec<&str> = decoded.split(":::").collect();
    assert_eq!(parts.len(), 3, "site id, token, private token: {decoded}");
    use md5::Digest;
    assert_eq!(parts[0], hex::encode(md5::Md5::digest("https://moodle.example.org123.456")));
    let info = app.ws_client(MOODLE_APP_UA).call(parts[1], "core_webservice_get_site_info", &[]).await;
    assert_eq!(info["username"], "alice", "{info}");
    assert_eq!(parts[2].len(), 64);
    assert_eq!(alice_tokens(&app), 2, "each sign-in through the browser is a device of its own");

    // An address a browser would load is never handed a token.
    let refused = http
        .get(app.url("/admin/tool/mobile/launch.php?service=moodle_mobile_app&passport=1&urlscheme=https"))
        .header("Cookie", format!("MoodleSession={}", session.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.headers().get("location").is_none());
    driver.client.clone().close().await.unwrap();
}

/// On a phone, a typical person's page (three browsers, two phones with push, a calendar and a
/// feed) fits in about two screens, nothing overflows sideways, and each entry's details open.
#[tokio::test]
async fn on_a_phone_a_typical_page_fits_about_two_screens() {
    let Some(driver) = start_browser().await else { return };
    let browser = &driver.client;
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    app.signed_in("alice", FIREFOX_UA).await;
    app.signed_in("alice", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1").await;
    for (uuid, model, ua) in [
        ("uuid-1", "Pixel 8", MOODLE_APP_UA),
        ("uuid-2", "iPhone15,3", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MoodleMobile 5.0.0 (50003)"),
    ] {
        let ws = app.ws_client(ua);
        let token = ws.token("alice", &[]).await;
        let device = [
            ("appid", "com.moodle.moodlemobile"),
            ("name", "Phone"),
            ("model", model),
            ("platform", "android-fcm"),
            ("version", "15"),
            ("pushid", uuid),
            ("uuid", uuid),
        ];
        ws.call(&token, "core_user_add_user_device", &device).await;
        ws.call(&token, "core_webservice_get_site_info", &[]).await;
    }
    app.key_for(alice).of_type("calendar_export").named("Thunderbird at home").create();
    app.key_for(alice).of_type("rss").named("Feedly").create();

    browser.set_window_size(390, 844).await.unwrap();
    browser.goto(&app.url("/")).await.unwrap();
    fill(browser, "username", "alice").await;
    fill(browser, "password", PASSWORD).await;
    click(browser, "#loginbtn").await;
    browser.wait().for_element(Locator::Id("revokeothers")).await.unwrap();
    let number = |v: serde_json::Value| v.as_f64().unwrap_or(f64::MAX);
    let (height, overflow) = (
        number(browser.execute("return document.documentElement.scrollHeight", vec![]).await.unwrap()),
        number(
            browser.execute("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await.unwrap(),
        ),
    );
    if let Ok(png) = browser.screenshot().await {
        let _ = std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("keys-phone.png"), png);
    }
    let entries = browser.find_all(Locator::Css("li.entry")).await.unwrap().len();
    assert_eq!(entries, 7, "one entry per browser, phone and feed");
    let screen = number(browser.execute("return window.innerHeight", vec![]).await.unwrap());
    assert!(height <= 2.3 * screen, "{height} px tall on a {screen} px screen");
    assert!(overflow <= 0.0, "nothing overflows sideways: {overflow} px");
    let summary = browser.find(Locator::Css("li.entry details.more summary")).await.unwrap();
    summary.click().await.unwrap();
    let chart = browser.find(Locator::Css("li.entry details.more[open] svg.usage")).await.unwrap();
    assert!(chart.is_displayed().await.unwrap());
    driver.client.clone().close().await.unwrap();
}

/// Saves what the browser shows at phone and desktop width, when USERKEYS_SCREENSHOTS names a
/// folder (for looking at the pages; nothing is asserted about the pictures).
async fn screenshots(browser: &Client, name: &str) {
    let Some(dir) = std::env::var_os("USERKEYS_SCREENSHOTS") else { return };
    let dir = std::path::PathBuf::from(dir);
    let _ = std::fs::create_dir_all(&dir);
    for width in [390u32, 1280] {
        browser.set_window_size(width, 900).await.unwrap();
        let height = browser
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .ok()
            .and_then(|h| h.as_u64())
            .unwrap_or(900)
            .clamp(600, 4000) as u32;
        browser.set_window_size(width, height + 120).await.unwrap();
        if let Ok(png) = browser.screenshot().await {
            let _ = std::fs::write(dir.join(format!("{name}-{width}.png")), png);
        }
    }
    browser.set_window_size(1100, 1400).await.unwrap();
}

#[tokio::test]
async fn an_admin_selects_every_key_on_the_page_with_one_checkbox_and_revokes_them() {
    let Some(driver) = start_browser().await else { return };
    let browser = &driver.client;
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let bob = app.create_user("bob", false);
    let mut alice_tokens = Vec::new();
    for (i, name) in ["Alice's Pixel 8", "Alice's iPad", "Grades export script"].iter().enumerate() {
        alice_tokens.push(app.key_for(alice).named(name).device(&i.to_string()).create().1);
    }
    app.key_for(alice).of_type("rss").create();
    let (_, bob_token) = app.key_for(bob).named("Bob's iPhone").create();
    let victim = app.create_user("victim", false);
    app.key_for(victim).named("Victim's phone").device("v1").create();
    app.key_for(victim).named("Victim's laptop").device("v2").create();

    browser.goto(&app.url("/login/index.php")).await.unwrap();
    fill(browser, "username", "root").await;
    fill(browser, "password", PASSWORD).await;
    click(browser, "#loginbtn").await;
    browser.wait().for_element(Locator::Css("a[href='/admin/userkeys/index.php']")).await.unwrap();

    // A force logout, for the audit trail's picture.
    browser.goto(&app.url(&format!("/admin/userkeys/forcelogout.php?id={victim}"))).await.unwrap();
    browser.wait().for_element(Locator::Id("reason")).await.unwrap();
    screenshots(browser, "admin-forcelogout").await;
    fill(browser, "reason", "stolen phone").await;
    click(browser, "#confirm").await;
    browser.wait().for_element(Locator::Css("p.notice")).await.unwrap();

    browser.goto(&app.url("/admin/userkeys/index.php")).await.unwrap();
    browser.wait().for_element(Locator::Id("resultcount")).await.unwrap();
    screenshots(browser, "admin-keys").await;
    browser.goto(&app.url("/admin/userkeys/index.php?user=alice")).await.unwrap();
    browser.wait().for_element(Locator::Id("selectall")).await.unwrap();
    let shown = browser.find(Locator::Id("selectall")).await.unwrap().is_displayed().await.unwrap();
    assert!(shown, "the select-all checkbox shows where its script runs");
    click(browser, "#selectall").await;
    let checked = browser
        .execute("return document.querySelectorAll('#bulk input[name=key]:checked').length;", vec![])
        .await
        .unwrap();
    assert_eq!(checked, serde_json::json!(4), "every key of alice's on the page is selected");
    click(browser, "#revokeselected").await;
    browser.wait().for_element(Locator::Id("confirm")).await.unwrap();
    let source = browser.source().await.unwrap();
    assert!(source.contains("Revoke 4 selected keys? They belong to alice."), "{source}");
    assert!(source.contains("Grades export script (Web-service token of alice)"), "{source}");
    screenshots(browser, "admin-confirm").await;
    click(browser, "#confirm").await;
    browser.wait().for_element(Locator::Css("p.notice")).await.unwrap();
    assert!(browser.source().await.unwrap().contains("Revoked 4 keys."));
    assert!(browser.current_url().await.unwrap().query().unwrap_or("").contains("user=alice"), "back to the list");
    let ws = app.ws_client(MOODLE_APP_UA);
    for token in &alice_tokens {
        assert_eq!(ws.call(token, "core_webservice_get_site_info", &[]).await["errorcode"], "invalidtoken");
    }
    assert_eq!(ws.call(&bob_token, "core_webservice_get_site_info", &[]).await["username"], "bob");

    browser.goto(&app.url("/admin/userkeys/index.php?user=alice&state=revoked")).await.unwrap();
    browser.wait().for_element(Locator::Id("resultcount")).await.unwrap();
    screenshots(browser, "admin-keys-revoked").await;
    browser.goto(&app.url("/admin/userkeys/index.php?user=alice&ip=999.1.1.1")).await.unwrap();
    browser.wait().for_element(Locator::Id("filter-error")).await.unwrap();
    screenshots(browser, "admin-keys-error").await;
    browser.goto(&app.url("/admin/userkeys/audit.php")).await.unwrap();
    browser.wait().for_element(Locator::Css("tr.group summary")).await.unwrap();
    click(browser, "tr.group summary").await;
    screenshots(browser, "admin-audit").await;
    browser.goto(&app.url(&format!("/admin/userkeys/user.php?id={alice}"))).await.unwrap();
    browser.wait().for_element(Locator::Id("bulk")).await.unwrap();
    screenshots(browser, "admin-user").await;
    browser.goto(&app.url("/admin/userkeys/issue.php")).await.unwrap();
    browser.wait().for_element(Locator::Id("issue")).await.unwrap();
    screenshots(browser, "admin-issue").await;
    browser.goto(&app.url("/admin/userkeys/services.php")).await.unwrap();
    browser.wait().for_element(Locator::Css("h1")).await.unwrap();
    screenshots(browser, "admin-services").await;
    driver.client.clone().close().await.unwrap();
}
