//! The Moodle app's own sign-in sequence, request for request, as moodlehq/moodleapp sends it
//! (src/core/services/sites.ts, ws.ts, src/core/classes/sites/*.ts, pushnotifications.ts):
//! public config through the AJAX service, login/token.php, site info with the app's
//! `moodlewssetting*` parameters, tool_mobile_get_config, device registration, batched calls,
//! auto-login, and removing the site.

mod common;

use common::*;
use serde_json::{json, Value};

const ANDROID_APP_UA: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.135 Mobile Safari/537.36 MoodleMobile 5.0.0 (50000)";
const SITE: &str = "https://moodle.example.org";
/// The functions the app calls in this sequence; it refuses, without a request, any that site
/// info does not list.
const USED_BY_THE_APP: &[&str] = &[
    "core_webservice_get_site_info",
    "tool_mobile_get_config",
    "core_user_add_user_device",
    "core_user_update_user_device_public_key",
    "core_user_remove_user_device",
    "tool_mobile_call_external_functions",
    "tool_mobile_get_autologin_key",
];

fn https_site() -> Options {
    Options { configure: Box::new(|c| c.wwwroot = Some(SITE.into())), ..Default::default() }
}

/// The app on one phone: its user agent, no cookies, requests shaped as moodleapp shapes them.
struct MoodleApp {
    base: String,
    http: reqwest::Client,
}

impl MoodleApp {
    fn new(app: &TestApp) -> Self {
        MoodleApp {
            base: app.base.clone(),
            http: reqwest::Client::builder()
                .user_agent(ANDROID_APP_UA)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// CoreWSProvider.performAjax: POST to service-nologin.php, the calls as a JSON body.
    async fn ajax(&self, script: &str, method: &str, content_type: &str) -> reqwest::Response {
        let body = json!([{"index": 0, "methodname": method, "args": {}}]).to_string();
        self.http
            .post(format!("{}/lib/ajax/{script}?info={method}&lang=en", self.base))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// What CoreUnauthenticatedSite reads: `data[0]`, or the error it carries.
    async fn public_config(&self) -> Value {
        let response = self.ajax("service-nologin.php", "tool_mobile_get_public_config", "application/json").await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer[0]["error"], false, "{answer}");
        answer[0]["data"].clone()
    }

    /// CoreSitesProvider.getUserToken.
    async fn sign_in(&self, username: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/login/token.php?lang=en", self.base))
            .form(&[("username", username), ("password", PASSWORD), ("service", "moodle_mobile_app")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "token.php allows any origin");
        response.json().await.unwrap()
    }

    /// CoreWSProvider.performSinglePost: the function in the query string and the body, with the
    /// settings the app always adds.
    async fn call(&self, token: &str, function: &str, args: &[(&str, &str)]) -> Value {
        let mut form: Vec<(&str, &str)> = args.to_vec();
        form.extend([
            ("moodlewssettingfilter", "true"),
            ("moodlewssettingfileurl", "true"),
            ("moodlewssettinglang", "en"),
            ("wsfunction", function),
            ("wstoken", token),
        ]);
        let response = self
            .http
            .post(format!("{}/webservice/rest/server.php?moodlewsrestformat=json&wsfunction={function}", self.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the app reads errors only from a 200");
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        response.json().await.unwrap()
    }

    /// CorePushNotificationsProvider.registerDeviceOnMoodle.
    async fn register_device(&self, token: &str, uuid: &str, pushid: &str) -> Value {
        let args = [
            ("appid", "com.moodle.moodlemobile"),
            // Device.manufacturer, as the app sends it.
            ("name", "Google"),
            ("model", "Pixel 8"),
            ("platform", "android-fcm"),
            ("version", "14"),
            ("pushid", pushid),
            ("uuid", uuid),
            ("publickey", "-----BEGIN PUBLIC KEY-----MFkw-----END PUBLIC KEY-----"),
        ];
        self.call(token, "core_user_add_user_device", &args).await
    }
}

/// The whole first sign-in of a new site, as the app makes it; returns (token, privatetoken).
async fn add_site(app: &MoodleApp, username: &str) -> (String, String) {
    let config = app.public_config().await;
    for fatal in ["enablewebservices", "enablemobilewebservice"] {
        assert_eq!(config[fatal], 1, "{config}");
    }
    assert_eq!(config["maintenanceenabled"], 0);
    assert_eq!(config["typeoflogin"], 1);
    assert_eq!(config["httpswwwroot"], SITE, "the app takes its site URL from here");

    let answer = app.sign_in(username).await;
    let token = answer["token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned();
    let private = answer["privatetoken"].as_str().unwrap_or_else(|| panic!("over HTTPS: {answer}")).to_owned();

    let info = app.call(&token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(info["username"], username, "{info}");
    let version: i64 = info["version"].as_str().unwrap().parse().unwrap();
    assert!(version >= 2018051700, "the app needs Moodle 3.5 or later");
    let listed: Vec<&str> = info["functions"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for function in USED_BY_THE_APP {
        assert!(listed.contains(function), "{function} must be listed or the app refuses it: {listed:?}");
    }
    assert_eq!(info["userprivateaccesskey"].as_str().unwrap().len(), 32);

    // The newest app abandons a new site when this fails.
    let settings = app.call(&token, "tool_mobile_get_config", &[]).await;
    let setting = |name: &str| {
        settings["settings"].as_array().unwrap().iter().find(|s| s["name"] == name).map(|s| s["value"].clone())
    };
    assert_eq!(setting("tool_mobile_autologinmintimebetweenreq"), Some(json!(360)), "{settings}");
    assert_eq!(setting("sitename"), Some(json!("userkeys")));
    assert!(setting("tool_mobile_disabledfeatures").is_some());
    (token, private)
}

#[tokio::test]
async fn the_app_signs_in_request_for_request_and_stays_signed_in() {
    let server = spawn_app_with(https_site());
    server.create_user("alice", false);
    let phone = MoodleApp::new(&server);
    let (token, private) = add_site(&phone, "alice").await;
    let key_id = server.key_of(&token).id;

    // The picture site info points at is an image.
    let info = phone.call(&token, "core_webservice_get_site_info", &[]).await;
    let picture = info["userpictureurl"].as_str().unwrap().replace(SITE, &server.base);
    let image = phone.http.get(picture).send().await.unwrap();
    assert_eq!(image.status(), 200);
    assert!(image.headers()["content-type"].to_str().unwrap().starts_with("image/"));
    let launch = phone.http.get(format!("{}/admin/tool/mobile/launch.php", server.base)).send().await.unwrap();
    assert_ne!(launch.status(), 404, "the launch URL of the public config answers");

    // Push registration at the LOGIN event; the second time the app updates the key instead.
    assert_eq!(phone.register_device(&token, "uuid-alice-1", "push-1").await, json!([]));
    let again = phone.register_device(&token, "uuid-alice-1", "push-1").await;
    assert_eq!(again[0][0]["warningcode"], "existingkeyforthisuser", "{again}");
    let updated = phone
        .call(
            &token,
            "core_user_update_user_device_public_key",
            &[("uuid", "uuid-alice-1"), ("appid", "com.moodle.moodlemobile"), ("publickey", "new-key")],
        )
        .await;
    assert_eq!(updated, json!({"status": true, "warnings": []}));
    let missing = phone
        .call(
            &token,
            "core_user_update_user_device_public_key",
            &[("uuid", "no-such"), ("appid", "com.moodle.moodlemobile"), ("publickey", "k")],
        )
        .await;
    assert_eq!(missing["warnings"][0]["warningcode"], "devicedoesnotexist");

    // Queued calls in one batch: each authorised as if alone and counted as a use; the first
    // failure ends the batch.
    // Seven calls so far: site info twice, the settings, two registrations, two key updates.
    let before = server.usage_hits(key_id, 7).await;
    assert_eq!(before, 7);
    let batch = phone
        .call(
            &token,
            "tool_mobile_call_external_functions",
            &[
                ("requests[0][function]", "core_webservice_get_site_info"),
                ("requests[0][arguments]", "{}"),
                ("requests[0][settingfilter]", "1"),
                ("requests[0][settingfileurl]", "1"),
                ("requests[1][function]", "tool_mobile_get_config"),
                ("requests[1][arguments]", "{\"section\":\"mobileapp\"}"),
                ("requests[2][function]", "core_course_get_courses"),
                ("requests[2][arguments]", "{}"),
                ("requests[3][function]", "tool_mobile_get_config"),
                ("requests[3][arguments]", "{}"),
            ],
        )
        .await;
    let responses = batch["responses"].as_array().unwrap_or_else(|| panic!("{batch}"));
    assert_eq!(responses.len(), 3, "stops after the refused call: {batch}");
    let first: Value = serde_json::from_str(responses[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(first["username"], "alice");
    let second: Value = serde_json::from_str(responses[1]["data"].as_str().unwrap()).unwrap();
    assert!(second["settings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["name"].as_str().unwrap().starts_with("tool_mobile")));
    assert_eq!(responses[2]["error"], true);
    let refused: Value = serde_json::from_str(responses[2]["exception"].as_str().unwrap()).unwrap();
    assert_eq!(refused["errorcode"], "accessexception");
    assert_eq!(server.usage_hits(key_id, before + 3).await, before + 3, "three inner calls, three uses");

    // Auto-login: the private token in the body, then the browser opens autologin.php.
    let autologin = phone.call(&token, "tool_mobile_get_autologin_key", &[("privatetoken", &private)]).await;
    let key = autologin["key"].as_str().unwrap_or_else(|| panic!("{autologin}"));
    assert_eq!(autologin["autologinurl"], format!("{SITE}/admin/tool/mobile/autologin.php"));
    let opened = phone
        .http
        .get(format!(
            "{}/admin/tool/mobile/autologin.php?userid={}&key={key}&urltogo=%2Fuser%2Fmanagetoken.php",
            server.base,
            server.key_of(&token).user_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 303);
    assert_eq!(opened.headers()["location"], "/user/managetoken.php");
    assert!(opened.headers()["set-cookie"].to_str().unwrap().starts_with("MoodleSession="));

    // Sign-out in the app sends nothing; deleting the site unregisters the device.
    let removed = phone
        .call(&token, "core_user_remove_user_device", &[("appid", "com.moodle.moodlemobile"), ("uuid", "uuid-alice-1")])
        .await;
    assert_eq!(removed["removed"], true, "{removed}");
    assert_eq!(phone.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
}

#[tokio::test]
async fn two_phones_with_one_user_agent_stay_signed_in_and_each_replaces_only_its_own_token() {
    let server = spawn_app_with(https_site());
    server.create_user("alice", false);
    // Two phones of one model and app version: the same user agent, nothing else alike.
    let (phone_a, phone_b) = (MoodleApp::new(&server), MoodleApp::new(&server));
    let (a1, _) = add_site(&phone_a, "alice").await;
    phone_a.register_device(&a1, "uuid-a", "push-a").await;
    let (b1, _) = add_site(&phone_b, "alice").await;
    phone_b.register_device(&b1, "uuid-b", "push-b").await;
    for (phone, token) in [(&phone_a, &a1), (&phone_b, &b1)] {
        assert_eq!(phone.call(token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    }

    // Phone A signs in again (the person re-added the site): its old token goes, B's stays.
    let (a2, _) = add_site(&phone_a, "alice").await;
    assert_eq!(phone_a.call(&a1, "core_webservice_get_site_info", &[]).await["username"], "alice", "not yet linked");
    phone_a.register_device(&a2, "uuid-a", "push-a").await;
    assert_eq!(phone_a.call(&a1, "core_webservice_get_site_info", &[]).await["errorcode"], "invalidtoken");
    assert_eq!(phone_a.call(&a2, "core_webservice_get_site_info", &[]).await["username"], "alice");
    assert_eq!(phone_b.call(&b1, "core_webservice_get_site_info", &[]).await["username"], "alice");
    assert_eq!(server.key_of(&a1).revoked_reason.as_deref(), Some("replaced by a new sign-in from the same device"));

    // One entry per device on the person's page, named after the phone the app registered.
    let page = server.signed_in("alice", CHROME_UA).await.keys_page().await;
    let (a2_key, b1_key) = (server.key_of(&a2).id, server.key_of(&b1).id);
    for key in [a2_key, b1_key] {
        let entry = page.entry_block(key).unwrap_or_else(|| panic!("{page}"));
        assert!(entry.contains("Pixel 8 · Android 14 · Moodle app 5.0"), "{entry}");
        assert!(
            entry.contains("<h4 class=\"keyname\">Push notification device"),
            "the push registration is on the same entry"
        );
    }
    assert!(page.key_block(server.key_of(&a1).id).is_none(), "the replaced token is not listed");
    assert_eq!(page.entries_of_kind("Push notification device"), 0, "no entry of its own: {page}");
    assert_eq!(page.entries_of_kind("Web-service token"), 2, "one entry per phone: {page}");

    // Revoking the device's entry ends its token and its push registration, and nothing else.
    let browser = server.signed_in("alice", CHROME_UA).await;
    browser.confirm(&format!("action=revoke&key={a2_key}")).await;
    assert_eq!(phone_a.call(&a2, "core_webservice_get_site_info", &[]).await["errorcode"], "invalidtoken");
    assert_eq!(phone_b.call(&b1, "core_webservice_get_site_info", &[]).await["username"], "alice");
    let alice = server.key_of(&b1).user_id;
    let pushes = server.with_db(|conn| {
        let rows = userkeys::db::keys::active_for_user(conn, alice, userkeys::domain::time::now())?;
        Ok(rows.into_iter().filter(|k| k.key_type == "push_device").map(|k| k.device_id).collect::<Vec<_>>())
    });
    assert_eq!(pushes, vec![Some("uuid-b".to_owned())], "phone A's registration went with it");
}

#[tokio::test]
async fn the_ajax_service_answers_every_way_the_app_asks() {
    let server = spawn_app_with(https_site());
    let app = MoodleApp::new(&server);
    for script in ["service.php", "service-nologin.php"] {
        // The native app sends JSON; its web build labels the same body as a form.
        for content_type in ["application/json", "application/x-www-form-urlencoded"] {
            let answer: Value =
                app.ajax(script, "tool_mobile_get_public_config", content_type).await.json().await.unwrap();
            assert_eq!(answer[0]["error"], false, "{script} {content_type}: {answer}");
            assert_eq!(answer[0]["data"]["wwwroot"], SITE);
        }
    }
    // The cacheable GET form: the calls in `args`.
    let args = json!([{"index": 0, "methodname": "tool_mobile_get_public_config", "args": {}}]).to_string();
    let url = reqwest::Url::parse_with_params(
        &format!("{}/lib/ajax/service-nologin.php", server.base),
        &[("info", "tool_mobile_get_public_config"), ("lang", "en"), ("args", args.as_str())],
    )
    .unwrap();
    let answer: Value = app.http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer[0]["data"]["showloginform"], 1, "{answer}");

    // Broken JSON is Moodle's coding error (on which the app retries as a GET); a function that
    // needs a token is refused without one; nothing answers 404 or 500.
    let broken: Value = app
        .http
        .post(format!("{}/lib/ajax/service-nologin.php", server.base))
        .body("[{")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(broken[0]["exception"]["errorcode"], "codingerror", "{broken}");
    let needs_login: Value = app
        .ajax("service-nologin.php", "core_webservice_get_site_info", "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(needs_login[0]["exception"]["errorcode"], "servicerequireslogin", "{needs_login}");
    let unknown: Value =
        app.ajax("service-nologin.php", "core_no_such_function", "application/json").await.json().await.unwrap();
    assert_eq!(unknown[0]["exception"]["errorcode"], "servicenotavailable", "{unknown}");
}
