//! Moodle's protocol spoken as a client does: form-encoded POSTs with a client user agent.

mod common;

use common::*;
use serde_json::Value;

fn https_site() -> Options {
    Options { configure: Box::new(|c| c.wwwroot = Some("https://moodle.example.org".into())), ..Default::default() }
}

fn errorcode(v: &Value) -> &str {
    v["errorcode"].as_str().unwrap_or_else(|| panic!("an error was expected: {v}"))
}

#[tokio::test]
async fn token_php_answers_in_moodles_format() {
    let app = spawn_app_with(https_site());
    app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let answer = ws.login("alice", PASSWORD, &[]).await;
    let token = answer["token"].as_str().unwrap();
    assert_eq!(token.len(), 32);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let private = answer["privatetoken"].as_str().unwrap();
    assert_eq!(private.len(), 64);
    assert!(private.chars().all(|c| c.is_ascii_alphanumeric()));
    // Stored only as hashes.
    let row = app.key_of(token);
    assert_ne!(row.secret_hash.as_deref(), Some(token));
    assert_ne!(row.private_hash.as_deref(), Some(private));

    // Usernames are trimmed and lowercased, as Moodle does.
    assert!(ws.login(" ALICE ", PASSWORD, &[]).await["token"].is_string());
    assert_eq!(ws.post_json("/login/token.php?appsitecheck=1", &[]).await["appsitecheck"], "ok");
}

#[tokio::test]
async fn private_token_only_over_https_and_never_for_admins() {
    let app = spawn_app();
    app.create_user("alice", false);
    let answer = app.ws_client(MOODLE_APP_UA).login("alice", PASSWORD, &[]).await;
    assert!(answer["token"].is_string());
    assert!(answer["privatetoken"].is_null(), "{answer}");

    let https = spawn_app_with(https_site());
    https.create_user("root", true);
    let answer = https.ws_client(MOODLE_APP_UA).login("root", PASSWORD, &[]).await;
    assert!(answer["token"].is_string() && answer["privatetoken"].is_null(), "{answer}");
}

#[tokio::test]
async fn token_php_errors_are_moodles() {
    let app = spawn_app();
    let bob = app.create_user("bob", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let wrong = ws.login("bob", "wrong", &[]).await;
    assert_eq!(errorcode(&wrong), "invalidlogin");
    assert_eq!(wrong["error"], "Invalid login, please try again");
    for key in ["stacktrace", "debuginfo", "reproductionlink"] {
        assert!(wrong.as_object().unwrap().contains_key(key) && wrong[key].is_null(), "{wrong}");
    }
    assert_eq!(errorcode(&ws.login("nobody", PASSWORD, &[]).await), "invalidlogin");
    let unknown =
        ws.post_json("/login/token.php", &[("username", "bob"), ("password", PASSWORD), ("service", "nope")]).await;
    assert_eq!(errorcode(&unknown), "servicenotavailable");
    let missing = ws.post_json("/login/token.php", &[("username", "bob")]).await;
    assert_eq!(errorcode(&missing), "missingparam");
    // GET is answered as Moodle answers it today: it works.
    let get: Value = ws
        .client
        .get(format!("{}/login/token.php?username=bob&password={PASSWORD}&service=moodle_mobile_app", ws.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(get["token"].is_string(), "{get}");
    app.with_db(|conn| userkeys::db::users::set_suspended(conn, bob, true));
    assert_eq!(errorcode(&ws.login("bob", PASSWORD, &[]).await), "invalidlogin");
}

#[tokio::test]
async fn two_devices_get_two_tokens_revoked_one_by_one() {
    let app = spawn_app();
    app.create_user("alice", false);
    let phone = app.ws_client(MOODLE_APP_UA);
    let tablet = app.ws_client("Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MoodleMobile 5.0.0 (50003)");
    let phone_token = phone.token("alice", &[]).await;
    let tablet_token = tablet.token("alice", &[]).await;
    assert_ne!(phone_token, tablet_token);
    for (ws, token) in [(&phone, &phone_token), (&tablet, &tablet_token)] {
        let info = ws.call(token, "core_webservice_get_site_info", &[]).await;
        assert_eq!(info["username"], "alice", "{info}");
    }

    let browser = app.signed_in("alice", CHROME_UA).await;
    let page = browser.keys_page().await;
    let phone_key = app.key_of(&phone_token).id;
    let tablet_key = app.key_of(&tablet_token).id;
    assert!(page.key_block(phone_key).unwrap().contains("Moodle app 4.4 · Android 15"), "{page}");
    assert!(page.key_block(tablet_key).unwrap().contains("Moodle app 5.0 · iOS 18.5"));

    browser.confirm(&format!("action=revoke&key={phone_key}")).await;
    let refused = phone.call(&phone_token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(errorcode(&refused), "invalidtoken");
    assert_eq!(refused["exception"], "moodle_exception");
    assert_eq!(refused["message"], "Invalid token - token not found");
    let still = tablet.call(&tablet_token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(still["username"], "alice", "the other device keeps working");
}

#[tokio::test]
async fn the_same_device_signing_in_again_holds_one_token() {
    let app = spawn_app();
    app.create_user("alice", false);
    let ws = app.ws_client("moodle-dl/2.3");
    let device =
        [("deviceid", "dev-1"), ("devicemodel", "Pixel 8"), ("deviceplatform", "Android"), ("deviceversion", "15")];
    let first = ws.token("alice", &device).await;
    let second = ws.token("alice", &device).await;
    assert_ne!(first, second);
    assert_eq!(errorcode(&ws.call(&first, "core_webservice_get_site_info", &[]).await), "invalidtoken");
    assert_eq!(ws.call(&second, "core_webservice_get_site_info", &[]).await["username"], "alice");
    let old = app.key_of(&first);
    assert!(old.revoked_at.is_some(), "the old token is revoked, not left behind");
    let other = ws.token("alice", &[("deviceid", "dev-2")]).await;
    assert_eq!(
        ws.call(&second, "core_webservice_get_site_info", &[]).await["username"],
        "alice",
        "a second device does not replace the first"
    );
    assert_eq!(ws.call(&other, "core_webservice_get_site_info", &[]).await["username"], "alice");

    let page = app.signed_in("alice", CHROME_UA).await.keys_page().await;
    let block = page.key_block(app.key_of(&second).id).unwrap();
    assert!(block.contains("Pixel 8 · Android 15"), "{block}");
    assert!(page.key_block(old.id).is_none());
}

#[tokio::test]
async fn each_refusal_is_moodles_error() {
    let app = spawn_app_with(Options { configure: Box::new(|c| c.debug = true), ..Default::default() });
    let alice = app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);

    assert_eq!(errorcode(&site_info(&ws, "0123456789abcdef0123456789abcdef").await), "invalidtoken");
    assert_eq!(
        errorcode(&ws.post_json("/webservice/rest/server.php", &[("moodlewsrestformat", "json")]).await),
        "invalidtoken"
    );

    let (_, expired) = app.key_for(alice).expired().create();
    let e = site_info(&ws, &expired).await;
    assert_eq!((errorcode(&e), e["exception"].as_str().unwrap()), ("accessexception", "webservice_access_exception"));
    assert_eq!(e["message"], "Access control exception");
    assert!(e["debuginfo"].as_str().unwrap().contains("token expired"), "{e}");
    // Told once, as Moodle (which deletes the token) tells it: then the app is sent to sign in.
    assert_eq!(errorcode(&site_info(&ws, &expired).await), "invalidtoken");
    assert_eq!(errorcode(&site_info(&ws, &expired).await), "invalidtoken");
    let row = app.key_of(&expired);
    assert!(row.revoked_at.is_none() && row.expiry_reported_at.is_some(), "kept as expired, not revoked: {row:?}");

    let (restricted_key, restricted) = app.key_for(alice).ip_restricted("10.0.0.0/8").create();
    let e = site_info(&ws, &restricted).await;
    assert_eq!(errorcode(&e), "accessexception");
    assert!(e["debuginfo"].as_str().unwrap().contains("IP:127.0.0.1 is not supported"), "{e}");
    set_ip_restriction(&app, restricted_key, "127.0.0.0/8, 10.0.0.0/8");
    assert_eq!(site_info(&ws, &restricted).await["username"], "alice", "inside its range it works");

    // A function this server lacks is refused as one the service does not offer, never as a
    // missing database record (which the app reads as "not a Moodle site").
    for function in ["core_no_such_function", "core_course_get_courses"] {
        let unknown = ws.call(&restricted, function, &[]).await;
        assert_eq!(
            (errorcode(&unknown), unknown["exception"].as_str().unwrap()),
            ("accessexception", "webservice_access_exception"),
            "{unknown}"
        );
        assert!(unknown["debuginfo"].as_str().unwrap().contains(&format!("{function}() is not allowed")));
    }
    let missing =
        ws.post_json("/webservice/rest/server.php", &[("wstoken", &restricted), ("moodlewsrestformat", "json")]).await;
    assert_eq!(errorcode(&missing), "invalidparameter");
    let bad = ws.call(&restricted, "core_user_add_user_device", &[("appid", "x")]).await;
    assert_eq!(errorcode(&bad), "invalidparameter");
    assert!(bad["debuginfo"].as_str().unwrap().contains("Missing required key"), "{bad}");
    let bad = ws.call(&restricted, "local_userkeys_revoke_my_key", &[("keyid[0]", "1")]).await;
    assert_eq!(errorcode(&bad), "invalidparameter");

    app.with_db(|conn| userkeys::db::users::set_suspended(conn, alice, true));
    let e = site_info(&ws, &restricted).await;
    assert_eq!(errorcode(&e), "wsaccessusersuspended");
    assert_eq!(e["message"], "Refused web service access for suspended username: alice");
}

async fn site_info(ws: &WsClient, token: &str) -> Value {
    ws.call(token, "core_webservice_get_site_info", &[]).await
}

fn set_ip_restriction(app: &TestApp, key_id: i64, restriction: &str) {
    app.with_db(|conn| userkeys::db::keys::set_ip_restriction(conn, key_id, Some(restriction)));
}

#[tokio::test]
async fn a_disabled_service_refuses_its_tokens_and_new_logins() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let (_, token) = app.key_for(alice).create();
    let service = app.key_of(&token).service_id.unwrap();
    app.with_db(|conn| userkeys::db::services::set_enabled(conn, service, false));
    let e = ws.call(&token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(errorcode(&e), "accessexception");
    assert!(e.get("debuginfo").is_none(), "debuginfo only in debug mode: {e}");
    assert_eq!(errorcode(&ws.login("alice", PASSWORD, &[]).await), "servicenotavailable");
    app.with_db(|conn| userkeys::db::services::set_enabled(conn, service, true));
    assert_eq!(
        ws.call(&token, "core_webservice_get_site_info", &[]).await["username"],
        "alice",
        "enabled again, it works"
    );
}

#[tokio::test]
async fn huge_binary_and_malformed_requests_get_moodle_errors() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let (_, token) = app.key_for(alice).create();
    let url = format!("{}/webservice/rest/server.php?moodlewsrestformat=json", ws.base);
    let huge = vec![b'a'; 3 * 1024 * 1024];
    let response = ws
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(errorcode(&body), "invalidparameter");

    let binary: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let response = ws.client.post(&url).body(binary).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(errorcode(&response.json::<Value>().await.unwrap()), "invalidtoken");

    let weird = format!("wstoken={token}&wsfunction=core_webservice_get_site_info&%ff%fe=%00&a[[[=1&a[b]]=2");
    let response = ws
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(weird)
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["username"], "alice");
}

#[tokio::test]
async fn xml_is_moodles_default_format() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let (_, token) = app.key_for(alice).create();
    let ok = ws
        .client
        .post(format!("{}/webservice/rest/server.php", ws.base))
        .form(&[("wstoken", token.as_str()), ("wsfunction", "core_webservice_get_site_info")])
        .send()
        .await
        .unwrap();
    assert!(ok.headers()["content-type"].to_str().unwrap().starts_with("application/xml"));
    let xml = ok.text().await.unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<SINGLE>\n"), "{xml}");
    assert!(xml.contains("<KEY name=\"username\"><VALUE>alice</VALUE>\n</KEY>"), "{xml}");
    let err = ws
        .client
        .post(format!("{}/webservice/rest/server.php", ws.base))
        .form(&[("wstoken", "nope"), ("wsfunction", "core_webservice_get_site_info")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(err.contains("<EXCEPTION class=\"moodle_exception\">\n<ERRORCODE>invalidtoken</ERRORCODE>"), "{err}");
}

#[tokio::test]
async fn site_info_has_moodles_fields_and_types() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let (_, token) = app.key_for(alice).create();
    let info = ws.call(&token, "core_webservice_get_site_info", &[]).await;
    for field in [
        "sitename",
        "username",
        "firstname",
        "lastname",
        "fullname",
        "lang",
        "siteurl",
        "userpictureurl",
        "release",
        "version",
        "mobilecssurl",
        "theme",
    ] {
        assert!(info[field].is_string(), "{field} is a string: {info}");
    }
    for field in
        ["userid", "downloadfiles", "uploadfiles", "userquota", "usermaxuploadfilesize", "userhomepage", "siteid"]
    {
        assert!(info[field].is_i64(), "{field} is an integer: {info}");
    }
    assert_eq!(info["userid"], alice);
    assert_eq!(info["userissiteadmin"], false);
    let functions = info["functions"].as_array().unwrap();
    assert!(functions.iter().any(|f| f["name"] == "core_user_add_user_device" && f["version"].is_string()));
    assert!(info["advancedfeatures"].as_array().unwrap().iter().all(|f| f["name"].is_string() && f["value"].is_i64()));
}

#[tokio::test]
async fn usage_counts_equal_the_calls_made_per_agent_and_ip() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let (key, token) = app.key_for(alice).create();
    for _ in 0..7 {
        assert_eq!(ws.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    }
    let script = app.ws_client("python-requests/2.28.2");
    for _ in 0..3 {
        script.call(&token, "core_webservice_get_site_info", &[]).await;
    }
    // Refused calls are not uses.
    script.call(&token, "core_no_such_function", &[]).await;
    assert_eq!(app.usage_hits(key, 10).await, 10);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(app.usage_hits(key, 10).await, 10, "no use counted twice");
    assert!(wait_until(|| app.key_of(&token).last_used_at.is_some()).await, "the last use is marked");
    let row = app.key_of(&token);
    assert!(row.last_used_at.is_some());
    assert_eq!(row.last_used_ip.as_deref(), Some("127.0.0.1"));

    let page = app.signed_in("alice", CHROME_UA).await.keys_page().await;
    let block = page.key_block(key).unwrap();
    assert!(block.contains("Moodle app 4.4 · Android 15") && block.contains("(7 uses)"), "{block}");
    assert!(block.contains("Python requests 2.28") && block.contains("(3 uses)"), "{block}");
}

#[tokio::test]
async fn the_page_shows_each_agents_latest_address_and_all_its_uses() {
    // Behind a trusted proxy the client's address comes from X-Forwarded-For, so one agent can
    // be seen from several addresses.
    let app = spawn_app_with(Options { configure: Box::new(|c| c.trust_proxy = true), ..Default::default() });
    let alice = app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let (key, token) = app.key_for(alice).create();
    let call_from = |ip: &'static str| {
        let form = [
            ("wstoken", token.clone()),
            ("wsfunction", "core_webservice_get_site_info".into()),
            ("moodlewsrestformat", "json".into()),
        ];
        let request = ws.client.post(app.url("/webservice/rest/server.php")).header("X-Forwarded-For", ip).form(&form);
        async move {
            let reply: Value = request.send().await.unwrap().json().await.unwrap();
            assert_eq!(reply["username"], "alice", "{reply}");
        }
    };
    for ip in ["198.51.100.1", "198.51.100.1", "203.0.113.9", "198.51.100.1"] {
        call_from(ip).await;
        // Uses a moment apart, so the latest is clear.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    call_from("203.0.113.77").await;
    assert_eq!(app.usage_hits(key, 5).await, 5);

    let page = app.signed_in("alice", CHROME_UA).await.keys_page().await;
    let block = page.key_block(key).unwrap();
    let agent = "<span class=\"agent\">Moodle app 4.4 · Android 15</span>";
    let line = block.lines().find(|l| l.contains(agent)).unwrap_or_else(|| panic!("{block}"));
    assert!(line.contains("from <code>203.0.113.77</code>") && line.contains("(5 uses)"), "{line}");
    assert_eq!(block.matches(agent).count(), 1, "one line per agent: {block}");
}

#[tokio::test]
async fn a_registered_device_names_its_token_and_can_be_removed() {
    let app = spawn_app();
    let alice = app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let (_, token) = app.key_for(alice).create();
    let device = [
        ("appid", "com.moodle.moodlemobile"),
        ("name", "Google"),
        ("model", "Pixel 8"),
        ("platform", "android"),
        ("version", "15"),
        ("pushid", "push-123"),
        ("uuid", "uuid-abc"),
    ];
    assert_eq!(ws.call(&token, "core_user_add_user_device", &device).await, serde_json::json!([]));
    let again = ws.call(&token, "core_user_add_user_device", &device).await;
    assert_eq!(again[0][0]["warningcode"], "existingkeyforthisuser", "{again}");
    assert_eq!(app.key_of(&token).name, "Pixel 8 · Android 15 · Moodle app 4.4");

    // One entry for the phone: its push registration is shown with its token, not apart.
    let page = app.signed_in("alice", CHROME_UA).await.keys_page().await;
    let entry = page.entry_block(app.key_of(&token).id).unwrap();
    assert!(entry.contains("<h4 class=\"keyname\">Push notification device"), "{entry}");
    assert_eq!(page.entries_of_kind("Push notification device"), 0, "{page}");

    let removed = ws.call(&token, "core_user_remove_user_device", &[("uuid", "uuid-abc")]).await;
    assert_eq!(removed, serde_json::json!({"removed": true, "warnings": []}));
    let again = ws.call(&token, "core_user_remove_user_device", &[("uuid", "uuid-abc")]).await;
    assert_eq!(again["removed"], false);
    assert_eq!(again["warnings"][0]["warningcode"], "devicedoesnotexist");
}

#[tokio::test]
async fn auto_login_key_signs_the_browser_in_once() {
    let app = spawn_app_with(https_site());
    app.create_user("alice", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let answer = ws.login("alice", PASSWORD, &[]).await;
    let (token, private) = (answer["token"].as_str().unwrap(), answer["privatetoken"].as_str().unwrap());

    let in_query = ws
        .post_json(
            &format!("/webservice/rest/server.php?privatetoken={private}"),
            &[("wstoken", token), ("wsfunction", "tool_mobile_get_autologin_key"), ("moodlewsrestformat", "json")],
        )
        .await;
    assert_eq!(errorcode(&in_query), "invalidprivatetoken");
    let wrong = ws.call(token, "tool_mobile_get_autologin_key", &[("privatetoken", "x")]).await;
    assert_eq!(errorcode(&wrong), "invalidprivatetoken");
    let not_app =
        app.ws_client(CHROME_UA).call(token, "tool_mobile_get_autologin_key", &[("privatetoken", private)]).await;
    assert_eq!(errorcode(&not_app), "apprequired");

    let key = ws.call(token, "tool_mobile_get_autologin_key", &[("privatetoken", private)]).await;
    assert_eq!(key["autologinurl"], "https://moodle.example.org/admin/tool/mobile/autologin.php", "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    let lockout = ws.call(token, "tool_mobile_get_autologin_key", &[("privatetoken", private)]).await;
    assert_eq!(errorcode(&lockout), "autologinkeygenerationlockout");

    let userid = app.key_of(token).user_id.to_string();
    let browser = app.browser(MOODLE_APP_UA);
    let page = browser
        .post(
            "/admin/tool/mobile/autologin.php",
            &[("key", &key), ("userid", &userid), ("urltogo", "/user/managetoken.php")],
        )
        .await;
    assert!(page.contains("Your keys"), "{page}");
    let other = app.browser(MOODLE_APP_UA);
    let reused = other.post("/admin/tool/mobile/autologin.php", &[("key", &key), ("userid", &userid)]).await;
    assert_eq!(reused.status, 403, "single use: {reused}");
}

#[tokio::test]
async fn qr_login_key_from_the_page_gives_the_app_its_own_token() {
    let app = spawn_app_with(https_site());
    app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    let page = browser.keys_page().await;
    let sesskey = page.hidden("sesskey").unwrap();
    let created = browser
        .post("/user/managetoken.php", &[("sesskey", &sesskey), ("action", "create"), ("type", "tool_mobile/qrlogin")])
        .await;
    assert!(created.contains("<svg"), "a QR code is shown: {created}");
    let content = created.input("newkey").unwrap();
    assert!(content.starts_with("moodlemobile://https://moodle.example.org?qrlogin="), "{content}");
    let key = content.split("qrlogin=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let userid = content.split("userid=").nth(1).unwrap().to_owned();

    let request = serde_json::json!([{"index": 0, "methodname": "tool_mobile_get_tokens_for_qr_login", "args": {"qrloginkey": key, "userid": userid}}]);
    let app_client = app.ws_client(MOODLE_APP_UA);
    let answer: Value = app_client
        .client
        .post(app.url("/lib/ajax/service-nologin.php?info=tool_mobile_get_tokens_for_qr_login"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer[0]["error"], false, "{answer}");
    let token = answer[0]["data"]["token"].as_str().unwrap();
    assert_eq!(app_client.call(token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    let again: Value = app_client
        .client
        .post(app.url("/lib/ajax/service-nologin.php"))
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again[0]["exception"]["errorcode"], "invalidkey", "single use: {again}");

    let config: Value = app_client
        .client
        .post(app.url("/lib/ajax/service-nologin.php"))
        .json(&serde_json::json!([{"index": 0, "methodname": "tool_mobile_get_public_config", "args": {}}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config[0]["data"]["showloginform"], 1);
    assert_eq!(config[0]["data"]["wwwroot"], "https://moodle.example.org");
}

#[tokio::test]
async fn rss_and_calendar_feeds_answer_only_with_a_valid_key() {
    let app = spawn_app();
    app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    let sesskey = browser.keys_page().await.hidden("sesskey").unwrap();
    let rss =
        browser.post("/user/managetoken.php", &[("sesskey", &sesskey), ("action", "create"), ("type", "rss")]).await;
    let url = rss.input("newkey").unwrap();
    let rss_path = url[url.find("/rss/").unwrap()..].to_owned();
    let path = &rss_path;
    let reader = app.ws_client("NetNewsWire (RSS Reader; https://netnewswire.com/)");
    let ok = reader.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("<rss version=\"2.0\">"));
    let bad = reader
        .client
        .get(app.url("/rss/file.php/1/0123456789abcdef0123456789abcdef/user/1/rss.xml"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);

    let cal = browser
        .post("/user/managetoken.php", &[("sesskey", &sesskey), ("action", "create"), ("type", "calendar_export")])
        .await;
    let url = cal.input("newkey").unwrap();
    let path = &url[url.find("/calendar/").unwrap()..];
    let google = app.ws_client("Google-Calendar-Importer");
    let ics = google.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(ics.status(), 200, "{path}");
    assert!(ics.text().await.unwrap().starts_with("BEGIN:VCALENDAR"));
    let wrong_user = path.replace("userid=", "userid=9");
    assert_eq!(google.client.get(app.url(&wrong_user)).send().await.unwrap().status(), 403);

    // Uses are written in the background; the page shows them once they are.
    let mut page = browser.keys_page().await;
    for _ in 0..100 {
        if page.contains("Google Calendar") && page.contains("NetNewsWire") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = browser.keys_page().await;
    }
    assert!(page.contains("Google Calendar") && page.contains("NetNewsWire"), "feeds show their readers: {page}");
    // Revoked, the feed stops answering.
    let id = *page.key_ids().iter().find(|id| page.key_block(**id).unwrap().contains("RSS feed key")).unwrap();
    browser.confirm(&format!("action=revoke&key={id}")).await;
    let revoked = reader.client.get(app.url(&rss_path)).send().await.unwrap();
    assert_eq!(revoked.status(), 403, "a revoked key opens nothing");
}

#[tokio::test]
async fn the_app_lists_and_revokes_only_its_owners_keys() {
    let app = spawn_app();
    let alice_id = app.create_user("alice", false);
    let bob_id = app.create_user("bob", false);
    let ws = app.ws_client(MOODLE_APP_UA);
    let (_, alice) = app.key_for(alice_id).device("1").create();
    let (other_key, alice_other) = app.key_for(alice_id).device("2").create();
    let (bob_key, bob) = app.key_for(bob_id).create();
    let listed = ws.call(&alice, "local_userkeys_get_my_keys", &[]).await;
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert!(keys.iter().any(|k| k["current"] == true));

    let bob_key = bob_key.to_string();
    let refused = ws.call(&alice, "local_userkeys_revoke_my_key", &[("keyid", &bob_key)]).await;
    assert_eq!(refused["revoked"], false);
    assert_eq!(ws.call(&bob, "core_webservice_get_site_info", &[]).await["username"], "bob");

    let other_key = other_key.to_string();
    assert_eq!(ws.call(&alice, "local_userkeys_revoke_my_key", &[("keyid", &other_key)]).await["revoked"], true);
    assert_eq!(errorcode(&ws.call(&alice_other, "core_webservice_get_site_info", &[]).await), "invalidtoken");
}
