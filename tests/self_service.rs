//! The self-service keys page, driven over HTTP with a cookie jar as a browser would.

mod common;

use common::*;
use userkeys::domain::time::now;
use userkeys::keys::KeyType;
use userkeys::keys::{KeyPolicy, SecretKind};

#[tokio::test]
async fn signing_in_creates_a_listed_web_session_with_its_agent() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    // The session's agent and address are written in the background: read once they are.
    let session = browser.keys_page().await.key_ids()[0];
    assert!(app.usage_hits(session, 1).await >= 1);
    let page = browser.keys_page().await;
    assert_eq!(page.status, 200);
    assert!(page.contains("Web sessions"));
    assert!(page.contains("This browser"));
    let ids = page.key_ids();
    assert_eq!(ids, vec![session], "{page}");
    let block = page.key_block(ids[0]).unwrap();
    assert!(block.contains("Chrome 132 · Windows"), "{block}");
    assert!(block.contains("127.0.0.1"), "{block}");
}

#[tokio::test]
async fn session_cookie_is_httponly_lax_and_only_its_hash_is_stored() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.browser(CHROME_UA);
    let form = browser.get("/login/index.php").await;
    let token = form.hidden("logintoken").unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client
        .post(app.url("/login/index.php"))
        .header("Cookie", format!("userkeys_logintoken={token}"))
        .form(&[("username", "alice"), ("password", PASSWORD), ("logintoken", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("MoodleSession="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let secret = cookie["MoodleSession=".len()..].split(';').next().unwrap().to_owned();
    let stored: Vec<Option<String>> = app.with_db(|conn| {
        use diesel::prelude::*;
        use userkeys::db::schema::user_keys::dsl::*;
        Ok(user_keys.select(secret_hash).load(&mut **conn)?)
    });
    assert_eq!(stored.len(), 1);
    let stored = stored[0].clone().unwrap();
    assert_ne!(stored, secret, "the session id must not be stored in clear");
    assert_eq!(stored, userkeys::domain::secret::SecretHash::of(&secret).as_str());
}

#[tokio::test]
async fn wrong_password_unknown_user_and_suspended_user_cannot_sign_in() {
    let app = spawn_app();
    let bob = app.create_user("bob", false);
    let browser = app.browser(CHROME_UA);
    let page = browser.sign_in("bob", "not-the-password").await;
    assert!(page.contains("Invalid login, please try again"), "{page}");
    let page = browser.sign_in("nobody", PASSWORD).await;
    assert!(page.contains("Invalid login, please try again"), "{page}");
    app.with_db(|conn| userkeys::db::users::set_suspended(conn, bob, true));
    let page = browser.sign_in("bob", PASSWORD).await;
    assert!(page.contains("suspended"), "{page}");
    assert!(browser.keys_page().await.url.starts_with("/login/index.php"));
}

#[tokio::test]
async fn sign_in_without_the_forms_logintoken_is_refused() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.browser(CHROME_UA);
    let page = browser.post("/login/index.php", &[("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(page.status, 403, "{page}");
    assert!(page.contains("expired"));
    assert!(browser.keys_page().await.url.starts_with("/login/index.php"), "no session was created");
}

#[tokio::test]
async fn revoking_a_session_signs_that_browser_out_and_leaves_this_one() {
    let app = spawn_app();
    app.create_user("alice", false);
    let laptop = app.signed_in("alice", CHROME_UA).await;
    let phone = app.signed_in("alice", FIREFOX_UA).await;
    let page = laptop.keys_page().await;
    let ids = page.key_ids();
    assert_eq!(ids.len(), 2);
    let phone_session = *ids.iter().find(|id| page.key_block(**id).unwrap().contains("Firefox")).unwrap();

    let after = laptop.confirm(&format!("action=revoke&key={phone_session}")).await;
    assert_eq!(
        after.flash().as_deref(),
        Some("Revoked “Firefox 142 · macOS”: whatever used it can no longer open your account."),
        "{after}"
    );
    assert_eq!(after.key_ids().len(), 1);
    assert!(!after.key_ids().contains(&phone_session));
    assert!(phone.keys_page().await.url.starts_with("/login/index.php"), "the revoked browser is signed out");
    assert_eq!(laptop.keys_page().await.status, 200);

    let audited: i64 = app.with_db(|conn| {
        use diesel::prelude::*;
        use userkeys::db::schema::audit_log::dsl::*;
        Ok(audit_log
            .filter(action.eq("key_revoked"))
            .filter(key_id.eq(phone_session))
            .count()
            .get_result(&mut **conn)?)
    });
    assert_eq!(audited, 1, "every revocation is audited");
}

#[tokio::test]
async fn another_users_key_answers_404_and_stays_valid() {
    let app = spawn_app();
    app.create_user("alice", false);
    app.create_user("mallory", false);
    let alice = app.signed_in("alice", CHROME_UA).await;
    let alice_key = alice.keys_page().await.key_ids()[0];
    let mallory = app.signed_in("mallory", FIREFOX_UA).await;
    let page = mallory.keys_page().await;
    assert!(!page.key_ids().contains(&alice_key));

    let confirm = mallory.get(&format!("/user/managetoken.php?action=revoke&key={alice_key}")).await;
    assert_eq!(confirm.status, 404, "{confirm}");
    let sesskey = page.hidden("sesskey").unwrap();
    let id = alice_key.to_string();
    let post =
        mallory.post("/user/managetoken.php", &[("action", "revoke"), ("key", &id), ("sesskey", &sesskey)]).await;
    assert_eq!(post.status, 404, "{post}");
    assert!(post.contains("not yours"));
    assert_eq!(alice.keys_page().await.status, 200, "alice is still signed in");
}

#[tokio::test]
async fn missing_or_stale_sesskey_changes_nothing() {
    let app = spawn_app();
    app.create_user("alice", false);
    let laptop = app.signed_in("alice", CHROME_UA).await;
    let _phone = app.signed_in("alice", FIREFOX_UA).await;
    let page = laptop.keys_page().await;
    let target = page.key_ids()[0].to_string();
    let missing = laptop.post("/user/managetoken.php", &[("action", "revoke"), ("key", &target)]).await;
    assert_eq!(missing.status, 403, "{missing}");
    assert!(missing.contains("expired"));
    let stale =
        laptop.post("/user/managetoken.php", &[("action", "revokeothers"), ("sesskey", "0123456789abcdef0123")]).await;
    assert_eq!(stale.status, 403);
    // A sesskey from another session of the same user is stale here too.
    let other = app.signed_in("alice", FIREFOX_UA).await.keys_page().await.hidden("sesskey").unwrap();
    let foreign = laptop.post("/user/managetoken.php", &[("action", "revokeothers"), ("sesskey", &other)]).await;
    assert_eq!(foreign.status, 403);
    assert_eq!(laptop.keys_page().await.key_ids().len(), 3, "nothing was revoked");
}

#[tokio::test]
async fn bad_input_gets_a_clear_page_not_a_500() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    for query in [
        "action=revoke&key=abc",
        "action=revoke",
        "action=explode",
        "action=revoketype&type=nope",
        "action=revoke&key=99999999999999999999",
    ] {
        let page = browser.get(&format!("/user/managetoken.php?{query}")).await;
        assert!(page.status == 400 || page.status == 404, "{query}: {page}");
        assert!(page.contains("<h1>"), "an HTML page explains it: {page}");
    }
    let sesskey = browser.keys_page().await.hidden("sesskey").unwrap();
    let page = browser.post("/user/managetoken.php", &[("sesskey", &sesskey)]).await;
    assert_eq!(page.status, 400, "a form without an action: {page}");
}

fn plugin_types() -> Vec<KeyType> {
    vec![
        KeyType::new("local_sync_key", "Sync app keys", "Keys of the campus sync app.")
            .with_settings_url("/local/sync/settings.php")
            .with_policy(KeyPolicy { secret: SecretKind::Token, ..Default::default() }),
        KeyType::new("local_hidden_key", "Hidden keys", "Internal keys.")
            .hidden()
            .with_policy(KeyPolicy { secret: SecretKind::Token, ..Default::default() }),
    ]
}

#[tokio::test]
async fn a_plugin_key_type_is_listed_and_revoked_without_page_changes() {
    let app = spawn_app_with(Options { key_types: plugin_types(), ..Default::default() });
    let alice = app.create_user("alice", false);
    let visible = app.key_for(alice).of_type("local_sync_key").named("Campus sync on laptop").create().0;
    let hidden = app.key_for(alice).of_type("local_hidden_key").named("Internal").create().0;
    let browser = app.signed_in("alice", CHROME_UA).await;
    let page = browser.keys_page().await;
    assert!(page.contains("Sync app keys") && page.contains("Campus sync on laptop"), "{page}");
    assert!(page.contains("settings.php\">Settings</a>"), "the type links its settings page");
    assert!(page.key_ids().contains(&visible));
    assert!(!page.key_ids().contains(&hidden) && !page.contains("Hidden keys"), "hidden types are not listed");

    let after = browser.confirm(&format!("action=revoke&key={visible}")).await;
    assert!(!after.key_ids().contains(&visible), "{after}");
    let revoked = app.with_db(|conn| userkeys::db::keys::find(conn, visible)).unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(revoked.revoked_by, Some(alice));
}

/// "Sign out everywhere else" ends every other signed-in client (browsers, app tokens, and a
/// plugin's hidden keys that sign in), says beforehand which, and leaves feed keys alone.
#[tokio::test]
async fn sign_out_everywhere_else_ends_other_sign_ins_and_leaves_feed_keys() {
    let mut types = plugin_types();
    types.push(
        KeyType::new("local_kiosk_session", "Kiosk sessions", "Signed-in kiosks.").hidden().with_policy(KeyPolicy {
            secret: SecretKind::Token,
            signs_in: true,
            ..Default::default()
        }),
    );
    let app = spawn_app_with(Options { key_types: types, ..Default::default() });
    let alice = app.create_user("alice", false);
    let bob = app.create_user("bob", false);
    let kiosk = app.key_for(alice).of_type("local_kiosk_session").named("Kiosk").create().0;
    let sync = app.key_for(alice).of_type("local_sync_key").named("Sync").create().0;
    let (rss, _) = app.key_for(alice).of_type("rss").named("Feed reader").create();
    let bobs = app.key_for(bob).of_type("local_kiosk_session").named("Bob's kiosk").create().0;
    let laptop = app.signed_in("alice", CHROME_UA).await;
    let phone = app.signed_in("alice", FIREFOX_UA).await;
    let app_token = app.ws_client(MOODLE_APP_UA).token("alice", &[]).await;

    let question = laptop.get("/user/managetoken.php?action=revokeothers").await;
    let listed = question.body.split("id=\"stopping\"").nth(1).unwrap_or("").split("</ul>").next().unwrap().to_owned();
    assert!(listed.contains("Firefox") && listed.contains("Moodle app"), "what will stop is named: {question}");
    assert!(!listed.contains("Feed reader") && !listed.contains("Chrome"), "{listed}");
    assert!(question.contains("Feed and calendar keys keep working"), "{question}");

    let after = laptop.confirm("action=revokeothers").await;
    assert_eq!(
        after.flash().as_deref(),
        Some("Signed out everywhere else: 3 browsers and apps were signed out."),
        "the other browser, the app and the kiosk: {after}"
    );
    assert!(phone.keys_page().await.url.starts_with("/login/index.php"));
    assert_eq!(
        app.ws_client(MOODLE_APP_UA).call(&app_token, "core_webservice_get_site_info", &[]).await["errorcode"],
        "invalidtoken"
    );
    assert!(app.with_db(|c| userkeys::db::keys::find(c, kiosk)).unwrap().revoked_at.is_some(), "hidden sign-ins too");
    for id in [sync, rss, bobs] {
        assert!(app.with_db(|c| userkeys::db::keys::find(c, id)).unwrap().revoked_at.is_none(), "key {id} untouched");
    }
    assert!(!after.contains("id=\"revokeothers\""), "nothing else is signed in now, so the button is gone: {after}");
}

#[tokio::test]
async fn revoke_all_of_a_type_leaves_other_types() {
    let app = spawn_app_with(Options { key_types: plugin_types(), ..Default::default() });
    let alice = app.create_user("alice", false);
    let a = app.key_for(alice).of_type("local_sync_key").named("One").create().0;
    let b = app.key_for(alice).of_type("local_sync_key").named("Two").create().0;
    let browser = app.signed_in("alice", CHROME_UA).await;
    let after = browser.confirm("action=revoketype&type=local_sync_key").await;
    assert_eq!(after.flash().as_deref(), Some("Revoked your 2 sync app keys."), "{after}");
    let ids = after.key_ids();
    assert!(!ids.contains(&a) && !ids.contains(&b));
    assert_eq!(ids.len(), 1, "the session stays");
}

#[tokio::test]
async fn an_expired_session_is_signed_out_on_its_next_request() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    let id = browser.keys_page().await.key_ids()[0];
    app.with_db(|conn| userkeys::db::keys::set_valid_until(conn, id, now() - chrono::Duration::seconds(1)));
    assert!(browser.keys_page().await.url.starts_with("/login/index.php"));
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    let page = browser.keys_page().await;
    let id = page.key_ids()[0];
    let sesskey = page.hidden("sesskey").unwrap();
    let out = browser.post("/login/logout.php", &[("sesskey", &sesskey)]).await;
    assert!(out.url.starts_with("/login/index.php"));
    assert!(app.with_db(|c| userkeys::db::keys::find(c, id)).unwrap().revoked_at.is_some());
    assert!(browser.keys_page().await.url.starts_with("/login/index.php"));
}

#[tokio::test]
async fn health_check_answers_ok() {
    let app = spawn_app();
    let response = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn many_keys_of_a_type_are_listed_25_at_a_time_with_show_all() {
    let app = spawn_app_with(Options { key_types: plugin_types(), ..Default::default() });
    let alice = app.create_user("alice", false);
    let ids: Vec<i64> =
        (0..30).map(|i| app.key_for(alice).of_type("local_sync_key").named(&format!("Sync {i}")).create().0).collect();
    let browser = app.signed_in("alice", CHROME_UA).await;
    let page = browser.keys_page().await;
    let listed: Vec<i64> = page.key_ids().into_iter().filter(|id| ids.contains(id)).collect();
    assert_eq!(listed.len(), 25, "{page}");
    assert!(listed.contains(&ids[29]) && !listed.contains(&ids[0]), "the newest are listed first");
    assert!(page.contains("Show all 30 sync app keys"), "{page}");
    assert!(page.contains("Revoke all 30 sync app keys"), "{page}");
    let all = browser.get("/user/managetoken.php?show=local_sync_key").await;
    assert_eq!(all.key_ids().into_iter().filter(|id| ids.contains(id)).count(), 30);
    let nonsense = browser.get("/user/managetoken.php?show=%00%ff").await;
    assert_eq!(nonsense.status, 200, "an unknown type to show changes nothing");
}

/// A new key is named on a short form, created by a POST, and shown once on the page that POST
/// redirects to: reloading that page shows it no more and creates nothing.
#[tokio::test]
async fn a_new_key_is_named_shown_once_and_a_reload_creates_nothing() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    let page = browser.keys_page().await;
    assert!(page.contains("href=\"/user/newkey.php?type=calendar%5Fexport\" id=\"create-calendar_export\""), "{page}");
    let form = browser.get("/user/newkey.php?type=calendar_export").await;
    assert_eq!(form.status, 200, "{form}");
    let sesskey = form.hidden("sesskey").unwrap();
    let shown = browser
        .post(
            "/user/managetoken.php",
            &[
                ("sesskey", &sesskey),
                ("action", "create"),
                ("type", "calendar_export"),
                ("name", "Thunderbird at home"),
            ],
        )
        .await;
    assert!(shown.url.starts_with("/user/newkey.php?created="), "a redirect to a page of its own: {}", shown.url);
    assert!(shown.contains("Your new key: Thunderbird at home"), "{shown}");
    let address = shown.input("newkey").unwrap();
    assert!(address.contains("/calendar/export_execute.php?userid="), "the whole address is there: {address}");
    assert!(shown.contains("data-copy=\"newkey\"") && shown.contains("src=\"/static/copy.js\""));

    let again = browser.get(&shown.url).await;
    assert!(again.contains("id=\"alreadyshown\""), "{again}");
    assert!(!again.body.contains(&address), "the secret is not shown twice");
    let keys = browser.keys_page().await;
    assert_eq!(keys.entries_of_kind("Calendar export key"), 1, "one key, however often reloaded: {keys}");
    assert!(keys.contains("Thunderbird at home"));
    let script = app.ws_client(CHROME_UA).client.get(app.url("/static/copy.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    let unknown = browser.get("/user/newkey.php?type=web_session").await;
    assert_eq!(unknown.status, 400, "a type people do not create: {unknown}");
}

/// An address the site does not have gets a page of the site saying so, with the way back; a
/// page that needs signing in says so, and leads back to it after.
#[tokio::test]
async fn unknown_pages_and_signed_out_visits_are_explained() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.browser(CHROME_UA);
    let missing = browser.get("/no/such/page.php").await;
    assert_eq!(missing.status, 404);
    assert!(missing.contains("class=\"brand\"") && missing.contains("Go to the start page"), "{missing}");
    let asked = browser.get("/user/password.php").await;
    assert!(asked.url.starts_with("/login/index.php?wantsurl=%2Fuser%2Fpassword.php"), "{}", asked.url);
    assert!(asked.contains("Sign in to continue."), "{asked}");
    let token = asked.hidden("logintoken").unwrap();
    let wantsurl = unescape(&asked.hidden("wantsurl").unwrap());
    let after = browser
        .post(
            "/login/index.php",
            &[("username", "alice"), ("password", PASSWORD), ("logintoken", &token), ("wantsurl", &wantsurl)],
        )
        .await;
    assert_eq!(after.url, "/user/password.php", "back where the person was going");
    app.signed_in("alice", FIREFOX_UA).await;
    let keys = browser.keys_page().await;
    assert!(keys.contains("aria-label=\"Revoke Firefox 142 · macOS\""), "each Revoke is named after its key: {keys}");
    assert!(keys.contains("aria-label=\"Sign out this browser\""), "{keys}");
}

/// A person names a key as they know it; the name stays when the app registers the phone
/// again, is audited, and only the owner can give it.
#[tokio::test]
async fn a_key_renamed_by_its_owner_keeps_the_name_and_is_audited() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    app.create_user("mallory", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let token = ws.token("alice", &[]).await;
    let device = [
        ("appid", "com.moodle.moodlemobile"),
        ("name", "Google"),
        ("model", "Pixel 8"),
        ("platform", "android-fcm"),
        ("version", "15"),
        ("pushid", "push-1"),
        ("uuid", "uuid-1"),
    ];
    ws.call(&token, "core_user_add_user_device", &device).await;
    let key = app.key_of(&token).id;
    let browser = app.signed_in("alice", CHROME_UA).await;
    let sesskey = browser.keys_page().await.hidden("sesskey").unwrap();
    let id = key.to_string();
    let rename = |name: &'static str| {
        let (browser, sesskey, id) = (&browser, sesskey.clone(), id.clone());
        async move {
            browser
                .post(
                    "/user/managetoken.php",
                    &[("sesskey", &sesskey), ("action", "rename"), ("key", &id), ("name", name)],
                )
                .await
        }
    };
    let page = rename("  Alice's Pixel ").await;
    assert_eq!(page.flash().as_deref(), Some("Renamed to “Alice's Pixel”."), "{page}");
    assert!(page.entry_block(key).unwrap().contains("<h3 class=\"entryname\">Alice&#x27;s Pixel"), "{page}");

    // The app registers the phone again (it does at every start): the person's name stays.
    let mut again = device;
    again[5] = ("pushid", "push-2");
    ws.call(&token, "core_user_add_user_device", &again).await;
    assert_eq!(app.key_of(&token).name, "Alice's Pixel");

    let audit = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 1000));
    let renamed = audit.iter().find(|e| e.action == "key_renamed").expect("an audit entry");
    assert_eq!((renamed.actor_id, renamed.key_id), (Some(alice), Some(key)));
    assert!(renamed.reason.as_deref().unwrap().contains("→ “Alice's Pixel”"), "{:?}", renamed.reason);

    assert_eq!(rename("   ").await.flash().as_deref(), Some("Type a name for the key."));
    let long = rename("An extremely long name that goes on and on, far past what any list of keys could ever show on a small phone screen, truly").await;
    assert_eq!(long.flash().as_deref(), Some("A key's name has at most 100 characters."));
    assert_eq!(app.key_of(&token).name, "Alice's Pixel", "refused names change nothing");

    let mallory = app.signed_in("mallory", FIREFOX_UA).await;
    let theirs = mallory.keys_page().await.hidden("sesskey").unwrap();
    let refused = mallory
        .post("/user/managetoken.php", &[("sesskey", &theirs), ("action", "rename"), ("key", &id), ("name", "Mine")])
        .await;
    assert_eq!(refused.status, 404, "someone else's key is not found: {refused}");
    let forged = browser
        .post("/user/managetoken.php", &[("sesskey", "forged"), ("action", "rename"), ("key", &id), ("name", "X")])
        .await;
    assert_ne!(forged.status, 200, "{forged}");
    assert_eq!(app.key_of(&token).name, "Alice's Pixel");
}

/// A key's uses per day over 30 days, drawn on its entry, with a summary a screen reader reads.
#[tokio::test]
async fn a_keys_uses_per_day_are_drawn_for_the_last_30_days() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    let (key, token) = app.key_for(alice).create();
    let ws = app.ws_client(MOODLE_APP_UA);
    for _ in 0..3 {
        assert_eq!(ws.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    }
    assert_eq!(app.usage_hits(key, 3).await, 3);
    // Five days ago it was used 7 times, and 40 days ago (outside the picture) 100 times.
    let today = userkeys::db::usage::day_of(now());
    app.with_db(|conn| {
        use diesel::RunQueryDsl;
        diesel::sql_query(format!(
            "INSERT INTO key_daily_uses (key_id, day, hits) VALUES ({key}, {}, 7), ({key}, {}, 100)",
            today - 5,
            today - 40
        ))
        .execute(&mut **conn)?;
        Ok(())
    });
    let five_days_ago = (now() - chrono::Duration::days(5)).format("%-d %b").to_string();
    let browser = app.signed_in("alice", CHROME_UA).await;
    let mut block = String::new();
    for _ in 0..50 {
        block = browser.keys_page().await.key_block(key).unwrap_or_default().to_owned();
        if block.contains("10 uses in the last 30 days") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(block.contains(&format!("10 uses in the last 30 days; most on {five_days_ago} (7).")), "{block}");
    assert_eq!(block.matches("<rect").count(), 30, "a bar a day");
}

/// Exact times read in the browser's own time zone (which /static/tz.js tells in a cookie),
/// else in the site's.
#[tokio::test]
async fn times_are_shown_in_the_viewers_time_zone() {
    let app = spawn_app_with(Options {
        configure: Box::new(|config| config.timezone = chrono_tz::Europe::Berlin),
        ..Default::default()
    });
    app.create_user("alice", false);
    let site_zone = app.signed_in("alice", CHROME_UA).await.keys_page().await;
    assert!(site_zone.contains(" CET</time>") || site_zone.contains(" CEST</time>"), "{site_zone}");

    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str("tz=Asia%2FTokyo; Path=/", &app.base.parse().unwrap());
    let client = reqwest::Client::builder().cookie_provider(jar).user_agent(CHROME_UA).build().unwrap();
    let tokyo = Browser { base: app.base.clone(), client };
    tokyo.sign_in("alice", PASSWORD).await;
    let page = tokyo.keys_page().await;
    assert!(page.contains(" JST</time>") && !page.contains(" CET</time>"), "{page}");

    let script = app.ws_client(CHROME_UA).client.get(app.url("/static/tz.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(page.contains("src=\"/static/tz.js\""));
}

/// Revoking a key that is already gone (from a second tab) says so by name, on the page.
#[tokio::test]
async fn revoking_a_key_twice_says_it_was_already_revoked() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    let (rss, _) = app.key_for(alice).of_type("rss").named("Feed reader").create();
    let browser = app.signed_in("alice", CHROME_UA).await;
    let sesskey = browser.keys_page().await.hidden("sesskey").unwrap();
    let id = rss.to_string();
    let form = [("sesskey", sesskey.as_str()), ("action", "revoke"), ("key", id.as_str())];
    assert!(browser.post("/user/managetoken.php", &form).await.flash().unwrap().starts_with("Revoked “Feed reader”"));
    let again = browser.post("/user/managetoken.php", &form).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.flash().as_deref(), Some("“Feed reader” was already revoked."), "{again}");
    let confirm = browser.get(&format!("/user/managetoken.php?action=revoke&key={rss}")).await;
    assert_eq!(confirm.flash().as_deref(), Some("“Feed reader” was already revoked."), "{confirm}");
}

/// After a failed sign-in the name stays typed, the cursor waits in the password field and the
/// error is tied to it, for a screen reader to read.
#[tokio::test]
async fn a_failed_sign_in_keeps_the_name_and_focuses_the_password() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.browser(CHROME_UA);
    let fresh = browser.get("/login/index.php").await;
    assert!(fresh.contains("autocapitalize=\"none\" required autofocus"), "a fresh form starts at the name: {fresh}");
    let failed = browser.sign_in("alice", "wrong password").await;
    assert!(failed.contains("id=\"loginerrormessage\""), "{failed}");
    assert!(failed.contains("value=\"alice\""), "{failed}");
    let password = failed.body.split("id=\"password\"").nth(1).unwrap().split('>').next().unwrap().to_owned();
    assert!(
        password.contains("autofocus") && password.contains("aria-describedby=\"loginerrormessage\""),
        "{password}"
    );
    let username = failed.body.split("id=\"username\"").nth(1).unwrap().split('>').next().unwrap().to_owned();
    assert!(!username.contains("autofocus"), "{username}");
}
