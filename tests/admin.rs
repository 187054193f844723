//! The admin console over real HTTP: capabilities, the site-wide key table, one person's keys,
//! revoke selected, force logout, issuing tokens, services and key types, the audit trail.

mod common;

use common::*;
use serde_json::Value;

const ADMIN_PAGES: [&str; 6] = [
    "/admin/userkeys/index.php",
    "/admin/userkeys/user.php?id=1",
    "/admin/userkeys/forcelogout.php?id=1",
    "/admin/userkeys/issue.php",
    "/admin/userkeys/services.php",
    "/admin/userkeys/audit.php",
];

async fn site_info(app: &TestApp, token: &str) -> Value {
    app.ws_client(MOODLE_APP_UA).call(token, "core_webservice_get_site_info", &[]).await
}

#[tokio::test]
async fn an_ordinary_user_is_refused_everywhere_and_nothing_changes() {
    let app = spawn_app();
    let victim = app.create_user("victim", false);
    app.create_user("eve", false);
    let (key, token) = app.key_for(victim).create();
    let eve = app.signed_in("eve", CHROME_UA).await;
    for page in ADMIN_PAGES {
        let answer = eve.get(page).await;
        assert_eq!(answer.status, 403, "{page}: {answer}");
        assert!(answer.contains("administrators"), "a clear page: {answer}");
    }
    let sesskey = eve.keys_page().await.hidden("sesskey").unwrap();
    let id = victim.to_string();
    let key = key.to_string();
    for (path, form) in [
        ("/admin/userkeys/forcelogout.php", vec![("sesskey", sesskey.as_str()), ("id", id.as_str()), ("reason", "x")]),
        ("/admin/userkeys/revoke.php", vec![("sesskey", sesskey.as_str()), ("key", key.as_str()), ("confirm", "1")]),
        ("/admin/userkeys/issue.php", vec![("sesskey", sesskey.as_str()), ("username", "victim"), ("service", "1")]),
        ("/admin/userkeys/services.php", vec![("sesskey", sesskey.as_str()), ("service", "1"), ("enable", "0")]),
    ] {
        assert_eq!(eve.post(path, &form).await.status, 403, "{path}");
    }
    assert_eq!(site_info(&app, &token).await["username"], "victim", "the token still works");
    assert!(!eve.keys_page().await.contains("Site administration"));
}

#[tokio::test]
async fn a_role_missing_a_capability_is_refused_that_action_only() {
    let app = spawn_app();
    let victim = app.create_user("victim", false);
    let auditor = app.create_user("audrey", false);
    app.assign_role(auditor, "auditor");
    let (key, token) = app.key_for(victim).create();
    let browser = app.signed_in("audrey", CHROME_UA).await;
    assert!(browser.keys_page().await.contains("Site administration"));
    assert_eq!(browser.get("/admin/userkeys/index.php").await.status, 200);
    assert_eq!(browser.get("/admin/userkeys/audit.php").await.status, 200);
    assert_eq!(browser.get(&format!("/admin/userkeys/user.php?id={victim}")).await.status, 200);
    for page in [
        "/admin/userkeys/issue.php",
        "/admin/userkeys/services.php",
        &format!("/admin/userkeys/forcelogout.php?id={victim}"),
    ] {
        let answer = browser.get(page).await;
        assert_eq!(answer.status, 403, "{page}");
        assert!(unescape(&answer.body).contains("capability tool/userkeys:"), "{answer}");
    }
    let sesskey = browser.keys_page().await.hidden("sesskey").unwrap();
    let key = key.to_string();
    let refused =
        browser.post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("key", &key), ("confirm", "1")]).await;
    assert_eq!(refused.status, 403);
    let id = victim.to_string();
    let refused =
        browser.post("/admin/userkeys/forcelogout.php", &[("sesskey", &sesskey), ("id", &id), ("reason", "x")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(site_info(&app, &token).await["username"], "victim");
}

#[tokio::test]
async fn the_key_table_filters_sorts_and_pages() {
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let bob = app.create_user("bob", false);
    for i in 0..55 {
        app.key_for(alice).device(&i.to_string()).create();
    }
    let (bob_key, bob_token) = app.key_for(bob).create();
    site_info(&app, &bob_token).await;
    assert_eq!(app.usage_hits(bob_key, 1).await, 1);
    // The list filters and sorts by the last use, which is marked after the fold.
    assert!(wait_until(|| app.key_of(&bob_token).last_used_at.is_some()).await, "bob's last use is marked");
    let admin = app.signed_in("root", CHROME_UA).await;

    let page = admin.get("/admin/userkeys/index.php?user=alice&type=webservice_token").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("<tr id=\"row-").count(), 50, "a page holds 50 keys");
    assert!(page.contains("id=\"nextpage\""));
    let page2 = admin.get("/admin/userkeys/index.php?user=alice&type=webservice_token&page=2").await;
    assert_eq!(page2.body.matches("<tr id=\"row-").count(), 5);

    let bob_rows = admin.get("/admin/userkeys/index.php?user=bob%40example&type=webservice_token").await;
    assert_eq!(bob_rows.body.matches("<tr id=\"row-").count(), 1, "matched by email: {bob_rows}");
    let by_ip = admin.get("/admin/userkeys/index.php?ip=127.0.0.0%2F8&type=webservice_token").await;
    assert!(by_ip.contains(&format!("id=\"row-{bob_key}\"")), "{by_ip}");
    assert_eq!(by_ip.body.matches("<tr id=\"row-").count(), 1, "only bob's token was used");
    let elsewhere = admin.get("/admin/userkeys/index.php?ip=10.0.0.0%2F8").await;
    assert_eq!(elsewhere.body.matches("<tr id=\"row-").count(), 0);
    let never = admin.get("/admin/userkeys/index.php?never=1&type=webservice_token&user=bob").await;
    assert_eq!(never.body.matches("<tr id=\"row-").count(), 0);
    let unused = admin.get("/admin/userkeys/index.php?unused=1&type=webservice_token").await;
    assert_eq!(unused.body.matches("<tr id=\"row-").count(), 0, "nothing is a day old");
    let sorted = admin.get("/admin/userkeys/index.php?type=webservice_token&sort=lastused_desc").await;
    let first_row = sorted.body.find("<tr id=\"row-").unwrap();
    assert!(sorted.body[first_row..].starts_with(&format!("<tr id=\"row-{bob_key}\"")), "the used key comes first");

    for bad in ["ip=999.1.1.1", "unused=abc", "state=gone", "type=nope", "sort=sideways", "service=x"] {
        let answer = admin.get(&format!("/admin/userkeys/index.php?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}: {answer}");
    }

    let csv =
        admin.client.get(app.url("/admin/userkeys/export.php?user=alice&type=webservice_token")).send().await.unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("id,username,fullname,type,"));
    assert_eq!(csv.lines().count(), 56, "header and every filtered key, past one page");
}

#[tokio::test]
async fn revoke_selected_revokes_exactly_those_with_an_audit_entry_each() {
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let (k1, t1) = app.key_for(alice).device("1").create();
    let (k2, t2) = app.key_for(alice).device("2").create();
    let (_, t3) = app.key_for(alice).device("3").create();
    let admin = app.signed_in("root", CHROME_UA).await;
    let sesskey = admin.keys_page().await.hidden("sesskey").unwrap();
    let (k1, k2) = (k1.to_string(), k2.to_string());
    let confirm = admin.post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("key", &k1), ("key", &k2)]).await;
    assert!(confirm.contains("Revoke 2 selected keys?"), "{confirm}");
    assert_eq!(site_info(&app, &t1).await["username"], "alice", "nothing happens before confirming");
    let done = admin
        .post(
            "/admin/userkeys/revoke.php",
            &[("sesskey", &sesskey), ("key", &k1), ("key", &k2), ("confirm", "1"), ("reason", "lost laptop")],
        )
        .await;
    assert_eq!(done.flash().as_deref(), Some("Revoked 2 keys."), "{done}");
    assert_eq!(site_info(&app, &t1).await["errorcode"], "invalidtoken");
    assert_eq!(site_info(&app, &t2).await["errorcode"], "invalidtoken");
    assert_eq!(site_info(&app, &t3).await["username"], "alice");
    let audit = admin.get("/admin/userkeys/audit.php?action=key_revoked&user=alice").await;
    // One revocation of two keys is one line, its reason said once, its keys under it.
    assert_eq!(audit.body.matches("lost laptop").count(), 1, "{audit}");
    assert!(audit.contains("<summary>2 keys revoked</summary>"), "{audit}");
    let bad = admin.post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("key", "abc")]).await;
    assert_eq!(bad.status, 400);
    let stale = admin.post("/admin/userkeys/revoke.php", &[("key", &k1), ("confirm", "1")]).await;
    assert_eq!(stale.status, 403);
}

#[tokio::test]
async fn force_logout_ends_every_session_token_and_device_at_once() {
    let app = spawn_app();
    let helpdesk = app.create_user("helen", false);
    app.assign_role(helpdesk, "helpdesk");
    let victim = app.create_user("victim", false);
    let victim_browser = app.signed_in("victim", FIREFOX_UA).await;
    let ws = app.ws_client(MOODLE_APP_UA);
    let (_, phone) = app.key_for(victim).device("phone").create();
    let (_, tablet) = app.key_for(victim).device("tablet").create();
    ws.call(
        &phone,
        "core_user_add_user_device",
        &[
            ("appid", "com.moodle.moodlemobile"),
            ("name", "Google"),
            ("model", "Pixel 8"),
            ("platform", "android"),
            ("version", "15"),
            ("pushid", "p1"),
            ("uuid", "u1"),
        ],
    )
    .await;
    let bystander = app.create_user("bystander", false);
    let (other_key, other) = app.key_for(bystander).create();
    let bystander_keys = || {
        app.with_db(|conn| userkeys::db::keys::active_for_user(conn, bystander, userkeys::domain::time::now()))
            .iter()
            .map(|k| k.id)
            .collect::<Vec<_>>()
    };
    let bystander_before = bystander_keys();
    assert_eq!(bystander_before, vec![other_key]);

    let desk = app.signed_in("helen", CHROME_UA).await;
    let page = desk.get(&format!("/admin/userkeys/user.php?id={victim}")).await;
    assert!(page.contains("Pixel 8 · Android 15") && page.contains("Push notification devices"), "{page}");
    let form = desk.get(&format!("/admin/userkeys/forcelogout.php?id={victim}")).await;
    let sesskey = form.hidden("sesskey").unwrap();
    let id = victim.to_string();
    let no_reason =
        desk.post("/admin/userkeys/forcelogout.php", &[("sesskey", &sesskey), ("id", &id), ("reason", "  ")]).await;
    assert_eq!(no_reason.status, 400);
    assert_eq!(site_info(&app, &phone).await["username"], "victim", "nothing changed without a reason");

    let done = desk
        .post("/admin/userkeys/forcelogout.php", &[("sesskey", &sesskey), ("id", &id), ("reason", "stolen phone")])
        .await;
    let said = done.flash().unwrap_or_default();
    assert!(said.starts_with("victim was signed out everywhere: ") && said.ends_with(" keys revoked."), "{done}");
    assert_eq!(site_info(&app, &phone).await["errorcode"], "invalidtoken");
    assert_eq!(site_info(&app, &tablet).await["errorcode"], "invalidtoken");
    let signed_out = victim_browser.keys_page().await;
    assert!(signed_out.url.starts_with("/login/index.php"), "{signed_out}");
    assert!(signed_out.contains("You were signed out"), "the person is told why: {signed_out}");
    let devices = app.with_db(|conn| userkeys::db::keys::active_for_user(conn, victim, userkeys::domain::time::now()));
    assert!(devices.is_empty(), "no key of any type is left: {devices:?}");
    assert_eq!(site_info(&app, &other).await["username"], "bystander");
    // Not suspended: the person can sign in again.
    assert!(ws.login("victim", PASSWORD, &[]).await["token"].is_string());

    let done = desk
        .post(
            "/admin/userkeys/forcelogout.php",
            &[("sesskey", &sesskey), ("id", &id), ("reason", "account locked"), ("suspend", "1")],
        )
        .await;
    assert_eq!(done.status, 200);
    assert_eq!(ws.login("victim", PASSWORD, &[]).await["errorcode"], "invalidlogin", "suspended");

    // The bystander's keys and account are untouched by both.
    assert_eq!(bystander_keys(), bystander_before, "the bystander keeps every key");
    assert!(app.key_of(&other).revoked_at.is_none());
    assert_eq!(site_info(&app, &other).await["username"], "bystander");
    assert!(ws.login("bystander", PASSWORD, &[]).await["token"].is_string(), "the bystander is not suspended");

    // Both are in the audit trail, by the help desk, with their reasons, about the victim only.
    let entries = app.with_db(|conn| {
        use diesel::prelude::*;
        use userkeys::db::schema::audit_log::dsl::*;
        Ok(audit_log
            .filter(action.like("force_logout%"))
            .order(id)
            .select((action, reason, actor_id, target_user_id))
            .load::<(String, Option<String>, Option<i64>, Option<i64>)>(&mut **conn)?)
    });
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].0, "force_logout");
    assert!(entries[0].1.as_deref().is_some_and(|r| r.starts_with("stolen phone (")), "{entries:?}");
    assert_eq!(entries[1].0, "force_logout_and_suspend");
    assert!(entries[1].1.as_deref().is_some_and(|r| r.starts_with("account locked (")), "{entries:?}");
    assert!(entries.iter().all(|(_, _, by, target)| *by == Some(helpdesk) && *target == Some(victim)), "{entries:?}");
    // And an auditor sees them on the audit page.
    let auditor = app.create_user("audrey", false);
    app.assign_role(auditor, "auditor");
    let audit = app.signed_in("audrey", CHROME_UA).await;
    for (action, reason) in [("force_logout", "stolen phone ("), ("force_logout_and_suspend", "account locked (")] {
        let page = audit.get(&format!("/admin/userkeys/audit.php?action={action}&user=victim")).await;
        assert_eq!(page.status, 200, "{page}");
        assert_eq!(page.body.matches("<tr><td>").count(), 1, "{action}: {page}");
        assert!(
            page.contains(&format!("<span class=\"muted\">{action}</span></td><td>helen</td>")),
            "{action}: {page}"
        );
        assert!(page.contains(reason), "{action}: {page}");
    }
}

#[tokio::test]
async fn issuing_a_token_validates_input_and_shows_the_token_once() {
    let app = spawn_app();
    let root = app.create_user("root", true);
    let svc = app.create_user("svc", false);
    let admin = app.signed_in("root", CHROME_UA).await;
    let form = admin.get("/admin/userkeys/issue.php").await;
    let sesskey = form.hidden("sesskey").unwrap();
    let service = form.body.split("<option value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let post = |fields: Vec<(&'static str, String)>| {
        let mut all = vec![("sesskey", sesskey.clone()), ("service", service.clone())];
        all.extend(fields);
        let admin = &admin;
        async move {
            let form: Vec<(&str, &str)> = all.iter().map(|(a, b)| (*a, b.as_str())).collect();
            admin.post("/admin/userkeys/issue.php", &form).await
        }
    };
    let bad_ip = post(vec![("username", "svc".into()), ("iprestriction", "10.0.0.0/8, 300.1.1.1".into())]).await;
    assert_eq!(bad_ip.status, 400);
    assert!(bad_ip.contains("300.1.1.1"), "{bad_ip}");
    let past = post(vec![("username", "svc".into()), ("validuntil", "2020-01-01".into())]).await;
    assert_eq!(past.status, 400);
    assert!(past.contains("in the past"));
    let nobody = post(vec![("username", "nobody".into())]).await;
    assert_eq!(nobody.status, 400);
    let garbage = post(vec![("username", "svc".into()), ("validuntil", "tomorrow".into())]).await;
    assert_eq!(garbage.status, 400);
    let before =
        app.with_db(|conn| userkeys::db::keys::active_for_user(conn, svc, userkeys::domain::time::now())).len();
    assert_eq!(before, 0, "refusals issued nothing");

    let issued = post(vec![
        ("username", "svc".into()),
        ("name", "Reporting".into()),
        ("iprestriction", "127.0.0.1".into()),
        ("validuntil", "2099-12-31".into()),
    ])
    .await;
    assert_eq!(issued.status, 200);
    let token = issued.input("newkey").unwrap();
    assert_eq!(token.len(), 32);
    assert_eq!(site_info(&app, &token).await["username"], "svc");
    let row = app.key_of(&token);
    assert_eq!(row.name, "Reporting");
    assert_eq!(row.created_by, Some(root), "created by the admin");
    assert!(!admin.get(&format!("/admin/userkeys/user.php?id={svc}")).await.contains(&token), "never shown again");
}

#[tokio::test]
async fn disabling_a_service_or_key_type_refuses_its_keys_until_enabled_again() {
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let (_, token) = app.key_for(alice).create();
    let admin = app.signed_in("root", CHROME_UA).await;
    let page = admin.get("/admin/userkeys/services.php").await;
    let sesskey = page.hidden("sesskey").unwrap();
    let service = app.key_of(&token).service_id.unwrap().to_string();

    let question = admin
        .post("/admin/userkeys/services.php", &[("sesskey", &sesskey), ("service", &service), ("enable", "0")])
        .await;
    assert!(
        question.contains("Disable Moodle mobile web service? 1 active key stops working at once"),
        "a count before a switch: {question}"
    );
    assert_eq!(site_info(&app, &token).await["username"], "alice", "nothing changed before the confirmation");
    let done = admin
        .post(
            "/admin/userkeys/services.php",
            &[("sesskey", &sesskey), ("service", &service), ("enable", "0"), ("confirm", "1")],
        )
        .await;
    assert!(done.contains("Moodle mobile web service is disabled: 1 key stopped working."), "{done}");
    assert_eq!(site_info(&app, &token).await["errorcode"], "accessexception");
    let listed = admin.get("/admin/userkeys/index.php?type=webservice_token").await;
    assert!(listed.contains("state disabled"), "shown as disabled: {listed}");
    let own = app.signed_in("alice", CHROME_UA).await.keys_page().await;
    assert!(own.contains("Its service is switched off by the site"), "the owner sees it too: {own}");
    let enabled = admin
        .post("/admin/userkeys/services.php", &[("sesskey", &sesskey), ("service", &service), ("enable", "1")])
        .await;
    assert!(enabled.contains("is enabled: 1 key works again."), "{enabled}");
    assert_eq!(site_info(&app, &token).await["username"], "alice", "restored without re-issuing");

    admin
        .post(
            "/admin/userkeys/services.php",
            &[("sesskey", &sesskey), ("type", "webservice_token"), ("enable", "0"), ("confirm", "1")],
        )
        .await;
    assert_eq!(site_info(&app, &token).await["errorcode"], "accessexception");
    assert_eq!(app.ws_client(MOODLE_APP_UA).login("alice", PASSWORD, &[]).await["errorcode"], "cannotcreatetoken");
    let own = app.signed_in("alice", CHROME_UA).await.keys_page().await;
    assert!(own.contains("Switched off by the site"), "the owner sees why their key stopped: {own}");
    admin
        .post("/admin/userkeys/services.php", &[("sesskey", &sesskey), ("type", "webservice_token"), ("enable", "1")])
        .await;
    assert_eq!(site_info(&app, &token).await["username"], "alice");

    let locked = admin
        .post("/admin/userkeys/services.php", &[("sesskey", &sesskey), ("type", "web_session"), ("enable", "0")])
        .await;
    assert_eq!(locked.status, 400);
    let nonsense = admin
        .post(
            "/admin/userkeys/services.php",
            &[("sesskey", &sesskey), ("type", "webservice_token"), ("enable", "maybe")],
        )
        .await;
    assert_eq!(nonsense.status, 400);
    let audit = admin.get("/admin/userkeys/audit.php").await;
    assert!(audit.contains("service_disabled") && audit.contains("key_type_enabled"), "{audit}");
    assert!(audit.contains("Service disabled") && audit.contains("Key type enabled"), "said in words: {audit}");
    assert!(audit.contains("Web-service tokens"), "key types by their names: {audit}");
}

#[tokio::test]
async fn the_audit_trail_records_issues_revocations_and_failed_sign_ins() {
    let app = spawn_app();
    app.create_user("root", true);
    app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    ws.login("alice", "wrong-password", &[]).await;
    app.browser(CHROME_UA).sign_in("alice", "wrong-again").await;
    let token = ws.token("alice", &[]).await;
    let admin = app.signed_in("root", CHROME_UA).await;
    let all = admin.get("/admin/userkeys/audit.php?user=alice").await;
    for action in ["token_login_failed", "sign_in_failed", "key_issued"] {
        assert!(all.contains(action), "{action}: {all}");
    }
    let key = app.key_of(&token).id.to_string();
    let one = admin.get(&format!("/admin/userkeys/audit.php?key={key}")).await;
    assert_eq!(one.body.matches("<tr><td>").count(), 1, "{one}");
    assert_eq!(admin.get("/admin/userkeys/audit.php?from=yesterday").await.status, 400);
    assert_eq!(admin.get("/admin/userkeys/audit.php?key=x").await.status, 400);
}

#[tokio::test]
async fn new_key_types_can_start_disabled_by_setting() {
    let app = spawn_app_with(Options {
        key_types: vec![userkeys::keys::KeyType::new("local_sync_key", "Sync app keys", "Keys of the sync app.")],
        configure: Box::new(|c| c.new_key_types_enabled = false),
        ..Default::default()
    });
    app.create_user("root", true);
    let admin = app.signed_in("root", CHROME_UA).await;
    let page = admin.get("/admin/userkeys/services.php").await;
    let row = page.body.split("id=\"type-local_sync_key\"").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(row.contains("state disabled"), "{row}");
    let core = page.body.split("id=\"type-rss\"").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(core.contains("state active"), "core types are not affected: {core}");
    let sesskey = page.hidden("sesskey").unwrap();
    admin
        .post("/admin/userkeys/services.php", &[("sesskey", &sesskey), ("type", "local_sync_key"), ("enable", "1")])
        .await;
    let page = admin.get("/admin/userkeys/services.php").await;
    let row = page.body.split("id=\"type-local_sync_key\"").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(row.contains("state active"), "{row}");
}

/// The rows of the all-keys table, by key id.
fn listed_rows(page: &Page) -> Vec<i64> {
    page.body
        .match_indices("<tr id=\"row-")
        .filter_map(|(i, m)| {
            let rest = &page.body[i + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

#[tokio::test]
async fn the_key_list_counts_shows_active_keys_first_and_says_when_a_key_was_revoked() {
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let bob = app.create_user("bob", false);
    let (phone, _) = app.key_for(alice).named("Alice's Pixel").device("1").create();
    let (laptop, _) = app.key_for(alice).named("Laptop script").device("2").create();
    let (bobs, _) = app.key_for(bob).named("Bob's iPhone").create();
    let admin = app.signed_in("root", CHROME_UA).await;
    let sesskey = admin.keys_page().await.hidden("sesskey").unwrap();
    let laptop_id = laptop.to_string();
    admin
        .post(
            "/admin/userkeys/revoke.php",
            &[("sesskey", &sesskey), ("key", &laptop_id), ("confirm", "1"), ("reason", "script retired")],
        )
        .await;

    // By default: active keys only, counted, with a header for the checkbox column.
    let list = admin.get("/admin/userkeys/index.php?type=webservice_token").await;
    let rows = listed_rows(&list);
    assert!(rows.contains(&phone) && rows.contains(&bobs) && !rows.contains(&laptop), "{list}");
    assert!(list.contains("<p class=\"resultcount\" id=\"resultcount\" role=\"status\">2 keys</p>"), "{list}");
    assert!(list.contains("<option value=\"active\" selected>Active</option>"), "{list}");
    assert!(list.contains("<th scope=\"col\" class=\"select\"><span class=\"sr-only\">Select</span>"), "{list}");
    assert!(list.contains("aria-label=\"Select Alice&#x27;s Pixel (Web-service token of alice)\""), "{list}");
    assert!(list.contains("id=\"clearfilters\" ") || list.contains("id=\"clearfilters\">"), "filtered by type: {list}");
    assert!(list.contains("<script src=\"&#x2F;static&#x2F;admin.js\"></script>") || list.contains("/static/admin.js"));
    assert!(list.contains(">Revoke selected keys</button>"), "named after what it acts on: {list}");
    let unfiltered = admin.get("/admin/userkeys/index.php").await;
    assert!(!unfiltered.contains("id=\"clearfilters\""), "nothing to clear: {unfiltered}");

    // Revoked keys say when they were revoked and why, not when they would have expired.
    let revoked = admin.get("/admin/userkeys/index.php?state=revoked").await;
    assert_eq!(listed_rows(&revoked), vec![laptop], "{revoked}");
    let row = revoked.body.split(&format!("id=\"row-{laptop}\"")).nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(row.contains("Revoked just now") && row.contains("script retired"), "{row}");
    assert!(revoked.contains(">1 key</p>"), "{revoked}");
    let any = admin.get("/admin/userkeys/index.php?state=any&type=webservice_token").await;
    assert_eq!(listed_rows(&any).len(), 3, "{any}");
    // The person's page says it too.
    let person = admin.get(&format!("/admin/userkeys/user.php?id={alice}")).await;
    let row = person.body.split(&format!("id=\"row-{laptop}\"")).nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(row.contains("Revoked just now") && row.contains("script retired"), "{row}");

    // The count stops counting at its cap, in the database.
    let filter = userkeys::db::key_search::KeyFilter::default();
    let capped =
        app.with_db(|conn| userkeys::db::key_search::count_capped(conn, &filter, userkeys::domain::time::now(), 2));
    assert_eq!(capped, 2, "three keys and more, counted up to the cap");
}

#[tokio::test]
async fn a_bad_filter_or_an_empty_selection_is_said_beside_the_form_which_keeps_its_values() {
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    app.key_for(alice).create();
    let admin = app.signed_in("root", CHROME_UA).await;

    let bad = admin.get("/admin/userkeys/index.php?user=alice&ip=999.1.1.1").await;
    assert_eq!(bad.status, 400);
    assert!(bad.contains("<h1>All keys</h1>") && bad.contains("id=\"filters\""), "the page, not an error page: {bad}");
    assert!(bad.contains("<p class=\"error\" role=\"alert\" id=\"filter-error\">"), "{bad}");
    assert!(unescape(&bad.body).contains("“999.1.1.1” is not an IP address"), "{bad}");
    assert!(bad.contains("name=\"user\" value=\"alice\""), "what was typed stays: {bad}");
    assert!(
        bad.contains("name=\"ip\" value=\"999.1.1.1\" placeholder=\"203.0.113.0/24\" size=\"16\" aria-invalid=\"true\" aria-describedby=\"filter-error\""),
        "the error is tied to its field: {bad}"
    );
    assert!(bad.contains("aria-current=\"page\">All keys</a>"), "{bad}");

    let sesskey = bad.hidden("sesskey").unwrap();
    let none = admin
        .post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("back", "/admin/userkeys/index.php?user=alice")])
        .await;
    assert_eq!(none.status, 400);
    assert!(none.contains("id=\"bulk-error\">Select at least one key to revoke.</p>"), "{none}");
    assert!(none.contains("name=\"user\" value=\"alice\""), "the list it came from: {none}");
    assert!(none.contains("aria-describedby=\"bulk-error\""), "{none}");
    let back = format!("/admin/userkeys/user.php?id={alice}");
    let none = admin.post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("back", &back)]).await;
    assert_eq!(none.status, 400);
    assert!(none.contains("Keys of alice") && none.contains("Select at least one key"), "{none}");
    // A return address elsewhere is not followed.
    let none =
        admin.post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("back", "https://evil.example/")]).await;
    assert_eq!(none.status, 400);
    assert!(none.contains("<h1>All keys</h1>"), "{none}");

    let audit = admin.get("/admin/userkeys/audit.php?user=alice&key=x").await;
    assert_eq!(audit.status, 400);
    assert!(audit.contains("<h1>Audit trail</h1>") && audit.contains("name=\"user\" value=\"alice\""), "{audit}");
    assert!(audit.contains("name=\"key\" value=\"x\" size=\"6\" inputmode=\"numeric\" aria-invalid=\"true\" aria-describedby=\"filter-error\""), "{audit}");
    // An action the list does not hold (a plugin's, an old link's) is kept and filtered on.
    let audit = admin.get("/admin/userkeys/audit.php?action=local_sync_reset").await;
    assert_eq!(audit.status, 200);
    assert!(audit.contains("<option value=\"local_sync_reset\" selected>local sync reset</option>"), "{audit}");
    assert!(audit.contains("Nothing recorded matches."), "{audit}");
}

#[tokio::test]
async fn the_bulk_revoke_confirmation_names_keys_and_owners_and_leads_back_to_the_filtered_list() {
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let bob = app.create_user("bob", false);
    let mut ids = Vec::new();
    for i in 0..23 {
        ids.push(app.key_for(alice).named(&format!("Script {i}")).device(&i.to_string()).create().0);
    }
    let (bobs, bob_token) = app.key_for(bob).named("Bob's iPhone").create();
    ids.push(bobs);
    let admin = app.signed_in("root", CHROME_UA).await;
    let sesskey = admin.keys_page().await.hidden("sesskey").unwrap();
    let back = "/admin/userkeys/index.php?user=&type=webservice_token&service=&state=active&unused=&never=&ip=&sort=created_asc";
    let mut form: Vec<(&str, String)> = vec![("sesskey", sesskey.clone()), ("back", back.into())];
    form.extend(ids.iter().map(|id| ("key", id.to_string())));
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let confirm = admin.post("/admin/userkeys/revoke.php", &fields).await;
    assert_eq!(confirm.status, 200);
    let text = unescape(&confirm.body);
    assert!(text.contains("Revoke 24 selected keys? They belong to 2 people: alice (23 keys), bob (1 key)."), "{text}");
    assert!(text.contains("<li>Script 0 (Web-service token of alice)</li>"), "{text}");
    assert_eq!(text.matches("(Web-service token of").count(), 20, "twenty named, then a count: {text}");
    assert!(text.contains("<li>and 4 more</li>"), "{text}");
    assert!(
        text.contains(&format!("class=\"button\" href=\"{back}\">Cancel</a>")),
        "Cancel returns to the list: {text}"
    );
    assert!(text.contains(">Revoke 24 keys</button>"), "{text}");
    assert_eq!(site_info(&app, &bob_token).await["username"], "bob", "nothing happens before confirming");

    form.push(("confirm", "1".into()));
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = admin.post("/admin/userkeys/revoke.php", &fields).await;
    assert_eq!(done.url, back, "back to the same filtered list");
    assert!(
        done.flash().as_deref() == Some("Revoked 24 keys.") && done.contains("<option value=\"created_asc\" selected>"),
        "{done}"
    );
    assert_eq!(site_info(&app, &bob_token).await["errorcode"], "invalidtoken");

    // From a person's page, back to that person.
    let (k, _) = app.key_for(alice).named("Tablet").create();
    let person = format!("/admin/userkeys/user.php?id={alice}");
    let page = admin.get(&person).await;
    assert!(page.contains("Revoke selected keys of alice"), "{page}");
    let k = k.to_string();
    let done = admin
        .post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("back", &person), ("key", &k), ("confirm", "1")])
        .await;
    assert!(done.url == person && done.flash().as_deref() == Some("Revoked 1 key."), "{done}");
}

#[tokio::test]
async fn revoke_all_matching_works_without_a_script_and_revokes_exactly_what_it_named() {
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let bob = app.create_user("bob", false);
    let (_, t1) = app.key_for(alice).named("One").device("1").create();
    let (_, t2) = app.key_for(alice).named("Two").device("2").create();
    let (_, bob_token) = app.key_for(bob).create();
    let admin = app.signed_in("root", CHROME_UA).await;
    let list = admin.get("/admin/userkeys/index.php?user=alice&type=webservice_token").await;
    assert!(list.contains(">Revoke all 2 matching</a>"), "{list}");
    let href = unescape(list.body.split("id=\"revokeall\" href=\"").nth(1).unwrap().split('"').next().unwrap());
    assert!(href.starts_with("/admin/userkeys/revoke.php?user=alice&"), "{href}");
    let confirm = admin.get(&href).await;
    assert_eq!(confirm.status, 200, "{confirm}");
    let text = unescape(&confirm.body);
    assert!(
        text.contains("Revoke 2 selected keys? They belong to alice.")
            && text.contains("<li>One (Web-service token of alice)</li>"),
        "{text}"
    );
    assert!(text.contains("href=\"/admin/userkeys/index.php?user=alice&"), "Cancel returns to the list: {text}");
    // A key made after the confirmation was shown is not revoked by it.
    let (_, t3) = app.key_for(alice).named("Three").device("3").create();
    let mut form: Vec<(String, String)> = Vec::new();
    for part in text.split("<input type=\"hidden\" name=\"").skip(1) {
        let name = part.split('"').next().unwrap().to_owned();
        let value = part.split("value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        form.push((name, value));
    }
    form.push(("reason".into(), "audit found them".into()));
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let done = admin.post("/admin/userkeys/revoke.php", &fields).await;
    assert_eq!(done.flash().as_deref(), Some("Revoked 2 keys."), "{done}");
    for token in [&t1, &t2] {
        assert_eq!(site_info(&app, token).await["errorcode"], "invalidtoken");
    }
    assert_eq!(site_info(&app, &t3).await["username"], "alice");
    assert_eq!(site_info(&app, &bob_token).await["username"], "bob");
    // Nothing to revoke among revoked keys: no such button, and the address says why.
    let revoked = admin.get("/admin/userkeys/index.php?user=alice&state=revoked").await;
    assert!(!revoked.contains("id=\"revokeall\""), "{revoked}");
    let refused = admin.get("/admin/userkeys/revoke.php?user=alice&state=revoked").await;
    assert_eq!(refused.status, 400);
    assert!(unescape(&refused.body).contains("Only active keys can be revoked"), "{refused}");
}

#[tokio::test]
async fn a_force_logout_is_one_line_of_the_audit_trail_with_its_keys_under_it() {
    let app = spawn_app();
    app.create_user("root", true);
    let victim = app.create_user("victim", false);
    app.key_for(victim).named("Victim's Pixel").device("1").create();
    app.key_for(victim).named("Victim's iPad").device("2").create();
    app.key_for(victim).of_type("rss").create();
    let admin = app.signed_in("root", CHROME_UA).await;
    let form = admin.get(&format!("/admin/userkeys/forcelogout.php?id={victim}")).await;
    let sesskey = form.hidden("sesskey").unwrap();
    let id = victim.to_string();
    admin
        .post("/admin/userkeys/forcelogout.php", &[("sesskey", &sesskey), ("id", &id), ("reason", "stolen phone")])
        .await;

    let audit = admin.get("/admin/userkeys/audit.php?user=victim").await;
    let text = unescape(&audit.body);
    assert_eq!(text.matches("<tr class=\"group\">").count(), 1, "{text}");
    assert_eq!(text.matches("stolen phone").count(), 1, "the reason is said once: {text}");
    let group = text.split("<tr class=\"group\">").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(group.contains("Signed out everywhere by an administrator") && group.contains("<td>root</td>"), "{group}");
    assert!(group.contains("<summary>3 keys revoked</summary>"), "{group}");
    assert!(group.contains("Victim's Pixel") && group.contains("Victim's iPad") && group.contains("RSS"), "{group}");

    // Two revocations of one key each, minutes apart in intent but by different reasons, stay apart.
    let (k1, _) = app.key_for(victim).named("A").device("a").create();
    let (k2, _) = app.key_for(victim).named("B").device("b").create();
    for (k, why) in [(k1, "first"), (k2, "second")] {
        let k = k.to_string();
        admin
            .post(
                "/admin/userkeys/revoke.php",
                &[("sesskey", &sesskey), ("key", &k), ("confirm", "1"), ("reason", why)],
            )
            .await;
    }
    let audit = admin.get("/admin/userkeys/audit.php?action=key_revoked&user=victim").await;
    let text = unescape(&audit.body);
    assert_eq!(text.matches("<tr class=\"group\">").count(), 1, "{text}");
    assert!(text.contains("first") && text.contains("second"), "{text}");
    assert!(
        text.contains("<option value=\"key_revoked\" selected>Key revoked</option>"),
        "the action in words: {text}"
    );
    assert!(text.contains("aria-current=\"page\">Audit trail</a>"), "{text}");
}

#[tokio::test]
async fn the_admin_navigation_marks_the_page_it_is_on() {
    let app = spawn_app();
    app.create_user("root", true);
    let admin = app.signed_in("root", CHROME_UA).await;
    for (path, current) in [
        ("/admin/userkeys/index.php", "All keys"),
        ("/admin/userkeys/user.php?id=1", "All keys"),
        ("/admin/userkeys/issue.php", "Issue a token"),
        ("/admin/userkeys/services.php", "Services and key types"),
        ("/admin/userkeys/audit.php", "Audit trail"),
    ] {
        let page = admin.get(path).await;
        assert_eq!(page.body.matches("aria-current=\"page\"").count(), 1, "{path}: {page}");
        assert!(page.contains(&format!("aria-current=\"page\">{current}</a>")), "{path}: {page}");
    }
}

#[tokio::test]
async fn admin_form_errors_are_tied_to_their_fields_and_buttons_name_whom_they_act_on() {
    let app = spawn_app();
    app.create_user("root", true);
    let alice = app.create_user("alice", false);
    app.key_for(alice).named("Alice's Pixel").create();
    let admin = app.signed_in("root", CHROME_UA).await;
    let form = admin.get("/admin/userkeys/issue.php").await;
    let sesskey = form.hidden("sesskey").unwrap();
    let service = form.body.split("<option value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let bad_ip = admin
        .post(
            "/admin/userkeys/issue.php",
            &[("sesskey", &sesskey), ("service", &service), ("username", "alice"), ("iprestriction", "300.1.1.1")],
        )
        .await;
    assert_eq!(bad_ip.status, 400);
    assert!(bad_ip.contains("id=\"issue-error\""), "{bad_ip}");
    assert!(
        bad_ip.contains(
            "<input id=\"iprestriction\" name=\"iprestriction\" aria-invalid=\"true\" aria-describedby=\"issue-error\""
        ),
        "{bad_ip}"
    );
    let nobody = admin
        .post("/admin/userkeys/issue.php", &[("sesskey", &sesskey), ("service", &service), ("username", "nobody")])
        .await;
    assert!(nobody.contains("<input id=\"username\" name=\"username\" aria-invalid=\"true\""), "{nobody}");

    let id = alice.to_string();
    let no_reason =
        admin.post("/admin/userkeys/forcelogout.php", &[("sesskey", &sesskey), ("id", &id), ("reason", " ")]).await;
    assert_eq!(no_reason.status, 400);
    assert!(no_reason.contains("aria-invalid=\"true\" aria-describedby=\"reason-error\""), "{no_reason}");
    assert!(no_reason.contains("id=\"confirm\" aria-label=\"Force logout of alice\""), "{no_reason}");

    let person = admin.get(&format!("/admin/userkeys/user.php?id={alice}")).await;
    for label in ["Force logout of alice", "Make a password reset link for alice", "Issue a token for alice"] {
        assert!(person.contains(&format!("aria-label=\"{label}\"")), "{label}: {person}");
    }
    assert!(person.contains("aria-label=\"Select Alice&#x27;s Pixel (Web-service token)\""), "{person}");
}
