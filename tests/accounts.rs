//! Accounts under attack: throttled guesses, a password change that signs everything else
//! out, administrators who cannot act above their own permissions, suspension lifted, and the
//! headers and answers that keep pages safe.

mod common;

use common::*;
use userkeys::domain::throttle::PER_ACCOUNT_AND_ADDRESS;

/// Audit entries of failed password checks (not refused attempts) for a reason.
fn checked_failures(app: &TestApp, reason: &str) -> i64 {
    let entries = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 1000));
    entries.iter().filter(|e| e.action.ends_with("_failed") && e.reason.as_deref() == Some(reason)).count() as i64
}

fn behind_proxy() -> TestApp {
    spawn_app_with(Options { configure: Box::new(|c| c.trust_proxy = true), ..Default::default() })
}

async fn token_login_from(app: &TestApp, ip: &str, username: &str, password: &str) -> serde_json::Value {
    let client = reqwest::Client::builder().user_agent(MOODLE_APP_UA).build().unwrap();
    let form = [("username", username), ("password", password), ("service", "moodle_mobile_app")];
    let response =
        client.post(app.url("/login/token.php")).header("X-Forwarded-For", ip).form(&form).send().await.unwrap();
    response.json().await.unwrap()
}

#[tokio::test]
async fn hundreds_of_guesses_at_once_check_no_more_passwords_than_the_limit() {
    let app = behind_proxy();
    app.create_user("alice", false);
    let guesses: Vec<_> = (0..300)
        .map(|i| {
            let base = app.base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().user_agent(MOODLE_APP_UA).build().unwrap();
                let form =
                    [("username", "alice"), ("password", &*format!("guess-{i}")), ("service", "moodle_mobile_app")];
                let answer: serde_json::Value = client
                    .post(format!("{base}/login/token.php"))
                    .header("X-Forwarded-For", "198.51.100.7")
                    .form(&form)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer["errorcode"].as_str().unwrap_or_default().to_owned()
            })
        })
        .collect();
    for guess in guesses {
        assert_eq!(guess.await.unwrap(), "invalidlogin");
    }
    assert_eq!(
        checked_failures(&app, "wrong password"),
        PER_ACCOUNT_AND_ADDRESS,
        "of 300 guesses at once, only as many were checked as the limit allows"
    );
    // The guesser's address is held back, even with the right password…
    assert_eq!(token_login_from(&app, "198.51.100.7", "alice", PASSWORD).await["errorcode"], "invalidlogin");
    // …but alice, from her own address, is not locked out by someone else's guesses.
    let answer = token_login_from(&app, "203.0.113.20", "alice", PASSWORD).await;
    assert!(answer["token"].is_string(), "{answer}");
}

#[tokio::test]
async fn known_and_unknown_usernames_are_throttled_alike() {
    let app = spawn_app();
    app.create_user("alice", false);
    let mut last = Vec::new();
    for username in ["alice", "nobody-here"] {
        let browser = app.browser(CHROME_UA);
        for _ in 0..PER_ACCOUNT_AND_ADDRESS {
            let page = browser.sign_in(username, "wrong-password").await;
            assert_eq!(page.status, 200);
            assert!(page.contains("Invalid login, please try again"), "{page}");
        }
        let page = browser.sign_in(username, "wrong-password").await;
        assert_eq!(page.status, 429, "{page}");
        let message =
            page.body.split("id=\"loginerrormessage\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
        assert!(message.starts_with("Too many failed sign-ins. Wait "), "{message}");
        last.push(message);
    }
    assert_eq!(last[0], last[1], "a known and an unknown username get the same words");
    assert_eq!(checked_failures(&app, "throttled"), 2, "refused attempts are audited, not checked");
}

#[tokio::test]
async fn changing_the_password_signs_out_every_other_browser_and_app() {
    let app = spawn_app();
    app.create_user("alice", false);
    let here = app.signed_in("alice", CHROME_UA).await;
    let elsewhere = app.signed_in("alice", FIREFOX_UA).await;
    let phone = app.ws_client(MOODLE_APP_UA);
    let token = phone.token("alice", &[]).await;

    let form = here.get("/user/password.php").await;
    assert_eq!(form.status, 200);
    let sesskey = form.hidden("sesskey").unwrap();
    let wrong = here
        .post(
            "/user/password.php",
            &[("sesskey", &sesskey), ("current", "not-it"), ("new", "n3w-secret-pass"), ("confirm", "n3w-secret-pass")],
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.contains("Your current password is not right."), "{wrong}");
    let short = here
        .post(
            "/user/password.php",
            &[("sesskey", &sesskey), ("current", PASSWORD), ("new", "short"), ("confirm", "short")],
        )
        .await;
    assert!(short.contains("at least 8 characters"), "{short}");
    let forged = here
        .post(
            "/user/password.php",
            &[("current", PASSWORD), ("new", "n3w-secret-pass"), ("confirm", "n3w-secret-pass")],
        )
        .await;
    assert_eq!(forged.status, 403, "no sesskey, no change");

    let done = here
        .post(
            "/user/password.php",
            &[("sesskey", &sesskey), ("current", PASSWORD), ("new", "n3w-secret-pass"), ("confirm", "n3w-secret-pass")],
        )
        .await;
    assert_eq!(done.status, 200, "{done}");
    assert!(done.contains("id=\"passwordchanged\""), "{done}");
    assert!(done.contains("2 other sign-ins"), "the other browser and the phone: {done}");

    assert_eq!(here.keys_page().await.status, 200, "this browser stays signed in");
    assert!(elsewhere.keys_page().await.url.starts_with("/login/index.php"), "the other browser is signed out");
    assert_eq!(phone.call(&token, "core_webservice_get_site_info", &[]).await["errorcode"], "invalidtoken");
    assert!(phone.login("alice", PASSWORD, &[]).await["token"].is_null(), "the old password opens nothing");
    assert!(phone.login("alice", "n3w-secret-pass", &[]).await["token"].is_string());
    let audit = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 1000));
    assert!(audit.iter().any(|e| e.action == "password_changed"));
    assert_eq!(audit.iter().filter(|e| e.reason.as_deref() == Some("password changed")).count(), 2);
}

#[tokio::test]
async fn a_help_desk_cannot_act_on_those_above_it_and_a_suspension_can_be_lifted() {
    let app = spawn_app();
    let admin = app.create_user("root", true);
    let helper = app.create_user("helper", false);
    app.assign_role(helper, "helpdesk");
    let manager = app.create_user("manager", false);
    app.assign_role(manager, "keymanager");
    let bob = app.create_user("bob", false);
    let desk = app.signed_in("helper", CHROME_UA).await;

    for target in [admin, manager] {
        let form = desk.get(&format!("/admin/userkeys/forcelogout.php?id={target}")).await;
        let sesskey = form.hidden("sesskey").unwrap();
        let refused = desk
            .post(
                "/admin/userkeys/forcelogout.php",
                &[("sesskey", &sesskey), ("id", &target.to_string()), ("reason", "test"), ("suspend", "1")],
            )
            .await;
        assert_eq!(refused.status, 403, "{refused}");
        let user = app.with_db(|conn| userkeys::db::users::find(conn, target)).unwrap();
        assert!(!user.suspended, "nothing changed");
    }
    let (admin_key, admin_token) = app.key_for(admin).create();
    let sesskey = desk.keys_page().await.hidden("sesskey").unwrap();
    let refused = desk
        .post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("key", &admin_key.to_string()), ("confirm", "1")])
        .await;
    assert_eq!(refused.status, 403, "{refused}");
    let ws = app.ws_client(MOODLE_APP_UA);
    assert_eq!(ws.call(&admin_token, "core_webservice_get_site_info", &[]).await["username"], "root");

    // Bob is below the help desk: suspended, then let back in.
    let form = desk.get(&format!("/admin/userkeys/forcelogout.php?id={bob}")).await;
    let sesskey = form.hidden("sesskey").unwrap();
    let done = desk
        .post(
            "/admin/userkeys/forcelogout.php",
            &[("sesskey", &sesskey), ("id", &bob.to_string()), ("reason", "lost phone"), ("suspend", "1")],
        )
        .await;
    assert_eq!(done.status, 200, "{done}");
    assert_eq!(
        app.browser(CHROME_UA).sign_in("bob", PASSWORD).await.contains("Your account has been suspended."),
        true
    );
    let page = desk.get(&format!("/admin/userkeys/user.php?id={bob}")).await;
    assert!(page.contains("id=\"unsuspend\""), "{page}");
    let lifted = desk
        .post("/admin/userkeys/suspend.php", &[("sesskey", &sesskey), ("id", &bob.to_string()), ("suspend", "0")])
        .await;
    assert!(lifted.contains("can sign in again"), "{lifted}");
    assert!(app.browser(CHROME_UA).sign_in("bob", PASSWORD).await.contains("Your keys"));
    let audit = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 1000));
    assert!(audit
        .iter()
        .any(|e| e.action == "unsuspended" && e.target_user_id == Some(bob) && e.actor_id == Some(helper)));
}

#[tokio::test]
async fn the_last_active_site_admin_cannot_be_suspended() {
    let app = spawn_app();
    let root = app.with_db(|conn| userkeys::db::users::find_by_username(conn, "admin")).unwrap().id;
    // The seeded admin's password is not known here; a second admin acts.
    let second = app.create_user("second", true);
    let browser = app.signed_in("second", CHROME_UA).await;
    let sesskey = browser.keys_page().await.hidden("sesskey").unwrap();
    let suspend = |id: i64| {
        let sesskey = sesskey.clone();
        let browser = &browser;
        async move {
            browser
                .post(
                    "/admin/userkeys/suspend.php",
                    &[("sesskey", &sesskey), ("id", &id.to_string()), ("suspend", "1")],
                )
                .await
        }
    };
    let suspended = suspend(root).await;
    assert!(
        suspended.flash().is_some_and(|m| m.contains(" is suspended")),
        "one of two admins may be suspended: {suspended}"
    );
    let refused = suspend(second).await;
    assert_eq!(refused.status, 403, "{refused}");
    assert!(refused.contains("only active administrator"), "{refused}");
}

#[tokio::test]
async fn pages_and_token_answers_carry_safe_headers_and_odd_input_is_refused_plainly() {
    let app = spawn_app();
    app.create_user("alice", false);
    let admin = app.create_user("boss", true);
    let _ = admin;
    let browser = app.signed_in("boss", CHROME_UA).await;
    let page = browser.client.get(app.url("/user/managetoken.php")).send().await.unwrap();
    let csp = page.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");

    let ws = app.ws_client(MOODLE_APP_UA);
    let form = [("username", "alice"), ("password", PASSWORD), ("service", "moodle_mobile_app")];
    let answer = ws.client.post(app.url("/login/token.php")).form(&form).send().await.unwrap();
    assert_eq!(answer.headers().get("cache-control").unwrap(), "no-store", "a token is never cached");

    let export = browser.client.get(app.url("/admin/userkeys/export.php")).send().await.unwrap();
    assert_eq!(export.headers().get("cache-control").unwrap(), "no-store");

    let far = browser.get("/admin/userkeys/audit.php?to=%2B262142-12-31").await;
    assert_eq!(far.status, 400, "a date past the calendar's end is refused, not a crash: {far}");

    let head = reqwest::Client::new().head(app.url("/healthz")).send().await.unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn signing_in_again_ends_the_browsers_earlier_session() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.browser(CHROME_UA);
    // A sign-in form left open in a second tab, posted once signed in from the first.
    let form = browser.get("/login/index.php").await;
    let token = form.hidden("logintoken").unwrap();
    let fields = [("username", "alice"), ("password", PASSWORD), ("logintoken", token.as_str())];
    assert!(browser.post("/login/index.php", &fields).await.contains("Your keys"));
    let first = browser.keys_page().await.hidden("sesskey").unwrap();
    let page = browser.post("/login/index.php", &fields).await;
    assert!(page.contains("Your keys"), "{page}");
    let second = browser.keys_page().await.hidden("sesskey").unwrap();
    assert_ne!(first, second, "a new session");
    let sessions = browser.keys_page().await;
    assert_eq!(sessions.entries_of_kind("Web session"), 1, "the earlier session is gone: {sessions}");
}

/// Bytes no database stores (a NUL in a username, say) are refused like any wrong sign-in, on
/// both backends, not turned into a database error.
#[tokio::test]
async fn a_nul_byte_in_a_sign_in_is_an_invalid_login_not_a_database_error() {
    let app = spawn_app();
    app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    for (username, password) in [("ali\0ce", PASSWORD), ("alice", "pass\0word"), ("\0", "\0")] {
        let answer = ws.login(username, password, &[]).await;
        assert_eq!(answer["errorcode"], "invalidlogin", "{username:?}: {answer}");
    }
    let page = app.browser(CHROME_UA).sign_in("ali\0ce", PASSWORD).await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.contains("Invalid login"), "{page}");
    let forgot = app.ws_client(MOODLE_APP_UA).call("\0", "core_webservice_get_site_info", &[]).await;
    assert_eq!(forgot["errorcode"], "invalidtoken");
    let token = ws.token("alice", &[]).await;
    let device = [
        ("appid", "com.moodle.moodlemobile"),
        ("name", "Pixel\0 8"),
        ("model", "Pixel 8"),
        ("platform", "android-fcm"),
        ("version", "15"),
        ("pushid", "push\0id"),
        ("uuid", "uuid-\0-1"),
    ];
    let registered = ws.call(&token, "core_user_add_user_device", &device).await;
    assert!(registered.get("errorcode").is_none(), "{registered}");
    app.create_user("root", true);
    let admin = app.signed_in("root", CHROME_UA).await;
    assert_eq!(admin.get("/admin/userkeys/index.php?user=al%00ice").await.status, 200);
    assert_eq!(admin.get("/admin/userkeys/audit.php?user=al%00ice&action=key%00").await.status, 200);
}

/// Text far longer than any real client sends (PostgreSQL cannot index a value of more than
/// about 2.7 kB) is answered like any other input and never costs the uses recorded with it.
#[tokio::test]
async fn oversized_input_is_answered_plainly_and_loses_no_usage() {
    let app = spawn_app();
    app.create_user("alice", false);
    let huge = "x".repeat(6000);
    let ws = app.ws_client(MOODLE_APP_UA);
    assert_eq!(ws.login(&huge, PASSWORD, &[]).await["errorcode"], "invalidlogin");
    assert_eq!(ws.login("alice", &huge, &[]).await["errorcode"], "invalidlogin");
    let page = app.browser(CHROME_UA).sign_in(&huge, PASSWORD).await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.contains("Invalid login"), "{page}");

    // A client whose user agent is 6,000 characters long, and one with a usual agent: both
    // calls are counted and both agents listed.
    let long_agent = format!("LongAgent/1.0 ({huge})");
    let token = ws.token("alice", &[]).await;
    let key = app.key_of(&token).id;
    let answer = app.ws_client(&long_agent).call(&token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(answer["username"], "alice", "{answer}");
    assert_eq!(ws.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    assert_eq!(app.usage_hits(key, 2).await, 2, "both uses were written");
    let device = [
        ("appid", "com.moodle.moodlemobile"),
        ("name", huge.as_str()),
        ("model", huge.as_str()),
        ("platform", "android-fcm"),
        ("version", huge.as_str()),
        ("pushid", huge.as_str()),
        ("uuid", huge.as_str()),
    ];
    let registered = ws.call(&token, "core_user_add_user_device", &device).await;
    assert!(registered.get("errorcode").is_none(), "{registered}");
    let page = app.signed_in("alice", CHROME_UA).await.keys_page().await;
    assert_eq!(page.status, 200);
    assert!(page.contains("LongAgent"), "the long agent is listed: {}", page.body.len());
}

/// A sign-in whose client gives up while its password waits its turn was never checked: it
/// counts against nobody, and the account and address stay open.
#[tokio::test]
async fn sign_ins_abandoned_by_their_clients_do_not_count_as_failures() {
    let app = spawn_app();
    app.create_user("alice", false);
    let impatient: Vec<_> = (0..60)
        .map(|_| {
            let url = app.url("/login/token.php");
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(std::time::Duration::from_millis(80)).build().unwrap();
                let form = [("username", "alice"), ("password", PASSWORD), ("service", "moodle_mobile_app")];
                client.post(url).form(&form).send().await.is_err()
            })
        })
        .collect();
    let mut gave_up = 0;
    for request in impatient {
        gave_up += usize::from(request.await.unwrap());
    }
    assert!(gave_up > 0, "some clients gave up while their passwords queued");
    let count = || {
        app.with_db(|conn| {
            use diesel::prelude::*;
            Ok(userkeys::db::schema::sign_in_failures::table.count().get_result::<i64>(&mut **conn)?)
        })
    };
    assert!(wait_until(|| count() == 0).await, "no failure is left counted: {}", count());
    assert!(app.ws_client(MOODLE_APP_UA).login("alice", PASSWORD, &[]).await["token"].is_string());
}

/// A class signing in at once from one school's address: sign-ins still being checked count
/// against their own account only, so sixty right passwords at once all get through.
#[tokio::test]
async fn a_class_signing_in_at_once_from_one_address_all_get_in() {
    let app = spawn_app();
    let names: Vec<String> = (0..60).map(|i| format!("pupil{i}")).collect();
    for name in &names {
        app.create_user(name, false);
    }
    let sign_ins: Vec<_> = names
        .iter()
        .map(|name| {
            let (url, name) = (app.url("/login/token.php"), name.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().user_agent(MOODLE_APP_UA).build().unwrap();
                let form = [("username", name.as_str()), ("password", PASSWORD), ("service", "moodle_mobile_app")];
                let answer: serde_json::Value =
                    client.post(url).form(&form).send().await.unwrap().json().await.unwrap();
                answer["token"].is_string()
            })
        })
        .collect();
    let mut signed_in = 0;
    for sign_in in sign_ins {
        signed_in += usize::from(sign_in.await.unwrap());
    }
    assert_eq!(signed_in, 60, "every right password got in");
}
