//! Force logout and key audit by script, over real HTTP: tool_userkeys_force_logout,
//! tool_userkeys_get_user_keys and tool_userkeys_revoke_keys through a token of the
//! `tool_userkeys_admin` service. Allowed only with the owner's capability, never above the
//! owner's station, audited with the token as the actor, and refused in Moodle's words.

mod common;

use common::*;
use serde_json::Value;

const ADMIN_SERVICE: &str = "tool_userkeys_admin";
const FORCE_LOGOUT: &str = "tool_userkeys_force_logout";
const GET_USER_KEYS: &str = "tool_userkeys_get_user_keys";
const REVOKE_KEYS: &str = "tool_userkeys_revoke_keys";
const SCRIPT_UA: &str = "curl/8.5.0";

fn audit(app: &TestApp) -> Vec<userkeys::db::models::AuditEntry> {
    app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 1000))
}

fn assert_no_permissions(answer: &Value, what: &str) {
    assert_eq!(answer["exception"], "required_capability_exception", "{what}: {answer}");
    assert_eq!(answer["errorcode"], "nopermissions", "{what}: {answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("Sorry, but you do not currently have permissions to do that ("),
        "{what}: {answer}"
    );
}

fn assert_invalid_parameter(answer: &Value, what: &str) {
    assert_eq!(answer["exception"], "invalid_parameter_exception", "{what}: {answer}");
    assert_eq!(answer["errorcode"], "invalidparameter", "{what}: {answer}");
}

async fn still_works(app: &TestApp, token: &str) -> bool {
    app.ws_client(MOODLE_APP_UA).call(token, "core_webservice_get_site_info", &[]).await["username"].is_string()
}

#[tokio::test]
async fn an_admins_script_audits_revokes_and_forces_logout_with_the_token_as_actor() {
    let app = spawn_app();
    let root = app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let (script_key, script) = app.key_for(root).service(ADMIN_SERVICE).named("Offboarding script").create();
    let (phone_key, phone) = app.key_for(alice).named("Pixel 8").create();
    let (feed_key, _) = app.key_for(alice).of_type("rss").named("Feeds").create();
    let (laptop_key, laptop) = app.key_for(alice).named("Laptop").create();
    let ws = app.ws_client(SCRIPT_UA);
    let alice_id = alice.to_string();

    // The service is there, enabled, with exactly these functions; the app's service has none of them.
    let info = ws.call(&script, "core_webservice_get_site_info", &[]).await;
    assert_not_in_service(&info);
    let mobile_token = app.key_for(root).create().1;
    let mobile_info = ws.call(&mobile_token, "core_webservice_get_site_info", &[]).await;
    let mobile_functions = mobile_info["functions"].as_array().unwrap();
    assert!(mobile_functions.iter().all(|f| !f["name"].as_str().unwrap().starts_with("tool_userkeys_")));
    let refused = ws.call(&mobile_token, FORCE_LOGOUT, &[("userid", &alice_id)]).await;
    assert_eq!(refused["errorcode"], "accessexception", "not in the app's service: {refused}");

    let listed = ws.call(&script, GET_USER_KEYS, &[("userid", &alice_id)]).await;
    assert_eq!(listed["username"], "alice", "{listed}");
    let keys = listed["keys"].as_array().unwrap();
    let ids: Vec<i64> = keys.iter().map(|k| k["id"].as_i64().unwrap()).collect();
    for id in [phone_key, feed_key, laptop_key] {
        assert!(ids.contains(&id), "{id} in {listed}");
    }
    let phone_entry = keys.iter().find(|k| k["id"] == phone_key).unwrap();
    assert_eq!(phone_entry["type"], "webservice_token");
    assert_eq!(phone_entry["name"], "Pixel 8");
    assert_eq!(phone_entry["state"], "active");
    assert_eq!(phone_entry["service"], "Moodle mobile web service");
    for field in ["timecreated", "validuntil", "lastaccess", "lastip"] {
        assert!(!phone_entry[field].is_null(), "{field}: {phone_entry}");
    }

    let phone_id = phone_key.to_string();
    let revoked = ws.call(&script, REVOKE_KEYS, &[("keyids[0]", &phone_id), ("reason", "lost phone")]).await;
    assert_eq!(revoked["revoked"], 1, "{revoked}");
    assert!(!still_works(&app, &phone).await, "the phone is refused at once");
    assert!(still_works(&app, &laptop).await, "only that key");
    let again = ws.call(&script, REVOKE_KEYS, &[("keyids[0]", &phone_id)]).await;
    assert_eq!(again["revoked"], 0, "already revoked counts for nothing: {again}");
    let entry = audit(&app).into_iter().find(|e| e.action == "key_revoked" && e.key_id == Some(phone_key)).unwrap();
    assert_eq!(entry.actor_id, Some(root));
    assert_eq!(entry.reason.as_deref(), Some(format!("lost phone (by web-service token #{script_key})").as_str()));

    let ended = ws.call(&script, FORCE_LOGOUT, &[("userid", &alice_id), ("reason", "left"), ("suspend", "1")]).await;
    assert_eq!(ended["revoked"], 2, "the laptop and the feed: {ended}");
    assert_eq!(ended["suspended"], true);
    assert!(!still_works(&app, &laptop).await);
    let suspended = app.with_db(|conn| userkeys::db::users::find(conn, alice)).unwrap().suspended;
    assert!(suspended);
    let entry = audit(&app).into_iter().find(|e| e.action == "force_logout_and_suspend").unwrap();
    assert_eq!(entry.actor_id, Some(root));
    assert_eq!(entry.target_user_id, Some(alice));
    assert!(
        entry.reason.as_deref().unwrap().starts_with(&format!("left (by web-service token #{script_key})")),
        "{entry:?}"
    );
    let listed = ws.call(&script, GET_USER_KEYS, &[("userid", &alice_id)]).await;
    assert!(listed["keys"].as_array().unwrap().iter().all(|k| k["state"] == "revoked"), "{listed}");

    // The admin's audit page names the token.
    let admin = app.signed_in("root", CHROME_UA).await;
    let page = admin.get("/admin/userkeys/audit.php?user=alice").await;
    assert!(page.contains(&format!("web-service token #{script_key}")), "{page}");
}

/// Site info is not a function of the admin service: a token of that service is refused it.
fn assert_not_in_service(answer: &Value) {
    assert_eq!(answer["errorcode"], "accessexception", "site info is not in the admin service: {answer}");
}

#[tokio::test]
async fn without_the_capability_or_above_ones_station_a_script_is_refused_and_nothing_changes() {
    let app = spawn_app();
    let root = app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let plain = app.create_user("plain", false);
    let auditor = app.create_user("audrey", false);
    app.assign_role(auditor, "auditor");
    let helper = app.create_user("helper", false);
    app.assign_role(helper, "helpdesk");
    let dev = app.create_user("dev", false);
    app.assign_role(dev, "integrator");

    let (alice_key, alice_token) = app.key_for(alice).create();
    let (root_key, root_token) = app.key_for(root).create();
    let (dev_key, dev_token) = app.key_for(dev).create();
    let script_of = |user: i64| app.key_for(user).service(ADMIN_SERVICE).create().1;
    let (plain_script, auditor_script, helper_script) = (script_of(plain), script_of(auditor), script_of(helper));
    let ws = app.ws_client(SCRIPT_UA);
    let (alice_id, root_id, dev_id) = (alice.to_string(), root.to_string(), dev.to_string());
    let (alice_key, root_key, dev_key) = (alice_key.to_string(), root_key.to_string(), dev_key.to_string());

    // No capability at all.
    assert_no_permissions(&ws.call(&plain_script, FORCE_LOGOUT, &[("userid", &alice_id)]).await, "plain logout");
    assert_no_permissions(&ws.call(&plain_script, GET_USER_KEYS, &[("userid", &alice_id)]).await, "plain list");
    assert_no_permissions(&ws.call(&plain_script, REVOKE_KEYS, &[("keyids[0]", &alice_key)]).await, "plain revoke");
    // An auditor may look, not touch.
    let listed = ws.call(&auditor_script, GET_USER_KEYS, &[("userid", &alice_id)]).await;
    assert!(listed["keys"].is_array(), "{listed}");
    assert_no_permissions(&ws.call(&auditor_script, REVOKE_KEYS, &[("keyids[0]", &alice_key)]).await, "auditor");
    assert_no_permissions(&ws.call(&auditor_script, FORCE_LOGOUT, &[("userid", &alice_id)]).await, "auditor");
    // The help desk may end an ordinary person's access, not a site admin's.
    assert_no_permissions(&ws.call(&helper_script, FORCE_LOGOUT, &[("userid", &root_id)]).await, "on an admin");
    assert_no_permissions(&ws.call(&helper_script, REVOKE_KEYS, &[("keyids[0]", &root_key)]).await, "admin's key");
    assert!(still_works(&app, &root_token).await, "the admin's token survived");
    assert!(still_works(&app, &alice_token).await, "nothing changed for alice");
    let changes = audit(&app).into_iter().filter(|e| e.action != "key_issued").count();
    assert_eq!(changes, 0, "refusals changed nothing");

    // Making one's own tokens is no shield against the help desk.
    let revoked = ws.call(&helper_script, REVOKE_KEYS, &[("keyids[0]", &dev_key), ("keyids[1]", &alice_key)]).await;
    assert_eq!(revoked["revoked"], 2, "{revoked}");
    assert!(!still_works(&app, &dev_token).await);
    let ended = ws.call(&helper_script, FORCE_LOGOUT, &[("userid", &dev_id)]).await;
    assert_eq!(ended["suspended"], false, "{ended}");
    let _ = root;
}

#[tokio::test]
async fn bad_parameters_are_moodles_invalidparameter_never_a_500() {
    let app = spawn_app();
    let root = app.create_user("root", true);
    let alice = app.create_user("alice", false);
    let (alice_key, alice_token) = app.key_for(alice).create();
    let (_, script) = app.key_for(root).service(ADMIN_SERVICE).create();
    let ws = app.ws_client(SCRIPT_UA);
    let alice_key = alice_key.to_string();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (REVOKE_KEYS, vec![]),
        (REVOKE_KEYS, vec![("keyids", "5")]),
        (REVOKE_KEYS, vec![("keyids[0]", "abc")]),
        (REVOKE_KEYS, vec![("keyids[0]", "-3")]),
        (REVOKE_KEYS, vec![("keyids[0]", "99999999")]),
        (REVOKE_KEYS, vec![("keyids[0]", &alice_key), ("keyids[1]", "99999999")]),
        (REVOKE_KEYS, vec![("keyids[0][x]", "1")]),
        (REVOKE_KEYS, vec![("keyids[x]", "1")]),
        (REVOKE_KEYS, vec![("keyids[0]", "99999999999999999999999")]),
        (FORCE_LOGOUT, vec![]),
        (FORCE_LOGOUT, vec![("userid", "abc")]),
        (FORCE_LOGOUT, vec![("userid", "0")]),
        (FORCE_LOGOUT, vec![("userid", "424242")]),
        (FORCE_LOGOUT, vec![("userid", "2"), ("suspend", "maybe")]),
        (FORCE_LOGOUT, vec![("userid[0]", "2")]),
        (GET_USER_KEYS, vec![]),
        (GET_USER_KEYS, vec![("userid", "424242")]),
        (GET_USER_KEYS, vec![("userid", "1e9")]),
    ];
    for (function, args) in cases {
        let answer = ws.call(&script, function, &args).await;
        assert_invalid_parameter(&answer, &format!("{function} {args:?}"));
    }
    assert!(still_works(&app, &alice_token).await, "a list with one bad id revoked nothing");
    // XML answers, too, are an exception and not a server error.
    let response = ws
        .client
        .post(format!("{}/webservice/rest/server.php", ws.base))
        .form(&[("wstoken", script.as_str()), ("wsfunction", REVOKE_KEYS), ("keyids[0]", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("invalidparameter"));
}
