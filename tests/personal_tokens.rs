//! Personal access tokens over real HTTP: a person with the capability makes a web-service token
//! for their own scripts on their keys page (name, one service, some of its functions, a
//! required expiry within the site's maximum, an IP restriction), sees it once, and it opens
//! only what it was made for. Refusals: no capability, over the maximum, a function outside
//! its scope, an expired token.

mod common;

use common::*;
use serde_json::Value;

const SITE_INFO: &str = "core_webservice_get_site_info";
const MY_KEYS: &str = "local_userkeys_get_my_keys";

fn in_days(days: i64) -> String {
    (userkeys::domain::time::now().date() + chrono::Duration::days(days)).to_string()
}

/// The mobile service's id, as the form offers it.
fn mobile_service(app: &TestApp) -> String {
    app.with_db(|conn| userkeys::db::services::find_by_shortname(conn, "moodle_mobile_app")).unwrap().id.to_string()
}

/// Posts the form with a fresh sesskey; `fields` besides.
async fn post_form(browser: &Browser, fields: &[(&str, &str)]) -> Page {
    let form = browser.get("/user/personaltoken.php").await;
    assert_eq!(form.status, 200, "{form}");
    let sesskey = form.hidden("sesskey").unwrap();
    let mut all = vec![("sesskey", sesskey.as_str())];
    all.extend_from_slice(fields);
    browser.post("/user/personaltoken.php", &all).await
}

fn assert_access_exception(answer: &Value, what: &str) {
    assert_eq!(answer["errorcode"], "accessexception", "{what}: {answer}");
    assert_eq!(answer["exception"], "webservice_access_exception", "{what}: {answer}");
    assert_eq!(answer["message"], "Access control exception", "{what}: {answer}");
}

#[tokio::test]
async fn a_personal_token_opens_only_its_functions_and_is_shown_once_with_its_scope() {
    let app = spawn_app();
    app.create_user("root", true);
    let dev = app.create_user("dev", false);
    app.assign_role(dev, "integrator");
    let browser = app.signed_in("dev", CHROME_UA).await;
    let page = browser.keys_page().await;
    assert!(page.contains("id=\"create-personal-token\""), "the button shows: {page}");
    assert!(!page.contains("Site administration"), "making one's own tokens opens no admin page");
    let form = browser.get("/user/personaltoken.php").await;
    assert!(form.contains("functions-") && form.contains(MY_KEYS), "the service's functions are offered: {form}");

    let service = mobile_service(&app);
    let field = format!("functions-{service}");
    let expires = in_days(30);
    let created = post_form(
        &browser,
        &[
            ("name", "Nightly export"),
            ("service", &service),
            (&field, SITE_INFO),
            (&field, MY_KEYS),
            ("expires", &expires),
            ("iprestriction", "127.0.0.1, 10.0.0.0/8"),
        ],
    )
    .await;
    assert_eq!(created.status, 200, "{created}");
    assert!(created.url.starts_with("/user/newkey.php?created="), "redirected to the shown-once page: {created}");
    let token = created.input("newkey").expect("the token is shown");
    assert_eq!(token.len(), 32);
    assert!(created.contains("class=\"copy\""), "with a Copy button");
    let again = browser.get(&created.url).await;
    assert!(again.contains("id=\"alreadyshown\"") && !again.contains(&token), "shown once: {again}");

    let row = app.key_of(&token);
    assert_eq!(row.name, "Nightly export");
    assert_eq!(row.function_scope.as_deref(), Some(format!("{SITE_INFO} {MY_KEYS}").as_str()));
    assert_eq!(row.valid_until.unwrap().date().to_string(), expires);
    assert_eq!(row.created_by, Some(dev));

    let ws = app.ws_client("nightly-export/1.0");
    let info = ws.call(&token, SITE_INFO, &[]).await;
    assert_eq!(info["username"], "dev", "{info}");
    let functions: Vec<&str> =
        info["functions"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(functions, vec![SITE_INFO, MY_KEYS], "site info lists only the token's own functions");
    assert!(ws.call(&token, MY_KEYS, &[]).await["keys"].is_array());
    // In the service, but not in the token's scope: refused as Moodle refuses a function not in the service.
    for outside in ["tool_mobile_get_config", "core_user_add_user_device", "tool_mobile_call_external_functions"] {
        assert_access_exception(&ws.call(&token, outside, &[]).await, outside);
    }
    // Nor through the batch function of a token that has it: an inner call is checked alike.
    let batch = ws
        .call(&token, "tool_mobile_call_external_functions", &[("requests[0][function]", "tool_mobile_get_config")])
        .await;
    assert_access_exception(&batch, "the batch itself is outside the scope");
    assert_eq!(ws.call(&token, SITE_INFO, &[]).await["username"], "dev", "refusals did not end the token");

    // The person's page shows it as a personal access token, its service and functions in its details.
    let page = browser.keys_page().await;
    let block = page.key_block(row.id).unwrap_or_else(|| panic!("the key is listed: {page}"));
    assert!(block.contains("Personal access token"), "{block}");
    assert!(block.contains("Moodle mobile web service"), "{block}");
    assert!(block.contains(SITE_INFO) && block.contains(MY_KEYS), "{block}");
    assert!(!block.contains("tool_mobile_get_config"), "{block}");

    // Admins see the scope in the audit trail and on the person's page.
    let admin = app.signed_in("root", CHROME_UA).await;
    let audit = admin.get(&format!("/admin/userkeys/audit.php?key={}", row.id)).await;
    assert!(audit.contains("personal access token") && audit.contains(MY_KEYS), "{audit}");
    let person = admin.get(&format!("/admin/userkeys/user.php?id={dev}")).await;
    assert!(person.contains("personal token") && person.contains(MY_KEYS), "{person}");
    let entries = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 1000));
    let issued = entries.iter().find(|e| e.action == "key_issued" && e.key_id == Some(row.id)).unwrap();
    assert_eq!(
        issued.reason.as_deref(),
        Some(
            format!("personal access token for Moodle mobile web service (moodle_mobile_app): {SITE_INFO}, {MY_KEYS}")
                .as_str()
        )
    );
}

#[tokio::test]
async fn without_a_subset_a_personal_token_has_its_whole_service_and_an_address_restriction_holds() {
    let app = spawn_app();
    let dev = app.create_user("dev", false);
    app.assign_role(dev, "integrator");
    let browser = app.signed_in("dev", CHROME_UA).await;
    let service = mobile_service(&app);
    let expires = in_days(90);
    let created = post_form(&browser, &[("name", "All of it"), ("service", &service), ("expires", &expires)]).await;
    let token = created.input("newkey").unwrap_or_else(|| panic!("{created}"));
    let ws = app.ws_client("script/1.0");
    assert!(ws.call(&token, "tool_mobile_get_config", &[]).await["settings"].is_array());
    let row = app.key_of(&token);
    assert!(row.function_scope.as_deref().unwrap().contains("tool_mobile_get_config"));
    let audit = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 1000));
    let issued = audit.iter().find(|e| e.key_id == Some(row.id)).unwrap();
    assert!(issued.reason.as_deref().unwrap().contains("all "), "{:?}", issued.reason);

    let elsewhere = post_form(
        &browser,
        &[("name", "Office only"), ("service", &service), ("expires", &expires), ("iprestriction", "10.0.0.0/8")],
    )
    .await;
    let restricted = elsewhere.input("newkey").unwrap();
    assert_access_exception(&ws.call(&restricted, SITE_INFO, &[]).await, "from outside its restriction");
}

#[tokio::test]
async fn mistakes_are_told_beside_their_field_and_nothing_is_made() {
    let app = spawn_app_with(Options { configure: Box::new(|c| c.personal_token_max_days = 30), ..Default::default() });
    let dev = app.create_user("dev", false);
    app.assign_role(dev, "integrator");
    let browser = app.signed_in("dev", CHROME_UA).await;
    let service = mobile_service(&app);
    let field = format!("functions-{service}");
    let (ok, too_far) = (in_days(10), in_days(31));
    let cases: Vec<(Vec<(&str, &str)>, &str, &str)> = vec![
        (vec![("name", "Too long"), ("service", &service), ("expires", &too_far)], "expires", "at most 30 days"),
        (vec![("name", "Forever"), ("service", &service), ("expires", "")], "expires", "Choose when the token expires"),
        (vec![("name", "Past"), ("service", &service), ("expires", "2020-01-01")], "expires", "in the future"),
        (vec![("name", "Garbage"), ("service", &service), ("expires", "soon")], "expires", "a date like"),
        (vec![("name", ""), ("service", &service), ("expires", &ok)], "name", "Give the token a name"),
        (vec![("name", "No service"), ("service", "99999"), ("expires", &ok)], "service", "Choose one of the services"),
        (
            vec![("name", "Stranger"), ("service", &service), (&field, "tool_userkeys_force_logout"), ("expires", &ok)],
            "functions",
            "is not a function of",
        ),
        (
            vec![
                ("name", "Bad IP"),
                ("service", &service),
                ("expires", &ok),
                ("iprestriction", "10.0.0.0/8, 300.1.1.1"),
            ],
            "iprestriction",
            "300.1.1.1",
        ),
    ];
    for (fields, bad_field, words) in cases {
        let page = post_form(&browser, &fields).await;
        assert_eq!(page.status, 400, "{fields:?}: {page}");
        let error = page.body.split(&format!("id=\"{bad_field}-error\">")).nth(1);
        let error = error.unwrap_or_else(|| panic!("an error beside {bad_field}: {page}"));
        assert!(unescape(error.split("</p>").next().unwrap()).contains(words), "{fields:?}: {page}");
        // What was typed is kept.
        if let Some((_, name)) = fields.iter().find(|(k, _)| *k == "name").filter(|(_, n)| !n.is_empty()) {
            assert!(page.contains(&format!("value=\"{name}\"")), "{page}");
        }
    }
    let made = app.with_db(|conn| userkeys::db::keys::active_for_user(conn, dev, userkeys::domain::time::now()));
    assert!(made.iter().all(|k| k.key_type != "webservice_token"), "no token was made: {made:?}");
    // The form says what the maximum is.
    assert!(browser.get("/user/personaltoken.php").await.contains("at most 30 days"));
}

#[tokio::test]
async fn an_expired_personal_token_is_refused() {
    let app = spawn_app();
    let dev = app.create_user("dev", false);
    app.assign_role(dev, "integrator");
    let browser = app.signed_in("dev", CHROME_UA).await;
    let service = mobile_service(&app);
    let expires = in_days(1);
    let created = post_form(&browser, &[("name", "Short"), ("service", &service), ("expires", &expires)]).await;
    let token = created.input("newkey").unwrap();
    let ws = app.ws_client("script/1.0");
    assert_eq!(ws.call(&token, SITE_INFO, &[]).await["username"], "dev");
    let id = app.key_of(&token).id;
    let past = userkeys::domain::time::now() - chrono::Duration::minutes(1);
    app.with_db(|w| userkeys::db::keys::set_valid_until(w, id, past));
    let refused = ws.call(&token, SITE_INFO, &[]).await;
    assert_access_exception(&refused, "expired");
    assert_eq!(ws.call(&token, SITE_INFO, &[]).await["errorcode"], "invalidtoken", "then unknown, as in Moodle");
}

#[tokio::test]
async fn a_person_without_the_capability_cannot_make_one_unless_the_site_lets_everyone() {
    let app = spawn_app();
    app.create_user("plain", false);
    let browser = app.signed_in("plain", CHROME_UA).await;
    let page = browser.keys_page().await;
    assert!(!page.contains("create-personal-token"), "no button: {page}");
    let form = browser.get("/user/personaltoken.php").await;
    assert_eq!(form.status, 403, "{form}");
    let sesskey = page.hidden("sesskey").unwrap();
    let service = mobile_service(&app);
    let expires = in_days(5);
    let posted = browser
        .post(
            "/user/personaltoken.php",
            &[("sesskey", &sesskey), ("name", "Sneaky"), ("service", &service), ("expires", &expires)],
        )
        .await;
    assert_eq!(posted.status, 403, "{posted}");
    // A help-desk role is not the capability either.
    let helper = app.create_user("helper", false);
    app.assign_role(helper, "helpdesk");
    assert_eq!(app.signed_in("helper", CHROME_UA).await.get("/user/personaltoken.php").await.status, 403);

    let open = spawn_app_with(Options {
        configure: Box::new(|c| c.personal_tokens_for_everyone = true),
        ..Default::default()
    });
    open.create_user("plain", false);
    let browser = open.signed_in("plain", CHROME_UA).await;
    assert!(browser.keys_page().await.contains("create-personal-token"));
    let service = mobile_service(&open);
    let created = post_form(&browser, &[("name", "Mine"), ("service", &service), ("expires", &expires)]).await;
    assert!(created.input("newkey").is_some(), "{created}");
}

/// The token cache shares what tokens of one service have in common: a personal token's narrower
/// view must stay its own, whichever of the two is cached first, and survive a warm-up at start.
#[tokio::test]
async fn a_personal_tokens_scope_never_leaks_to_its_services_other_tokens_through_the_cache() {
    let app = spawn_app();
    let dev = app.create_user("dev", false);
    app.assign_role(dev, "integrator");
    let (_, ordinary_first) = app.key_for(dev).named("Phone").create();
    let ws = app.ws_client(MOODLE_APP_UA);
    let config = "tool_mobile_get_config";
    assert!(ws.call(&ordinary_first, config, &[]).await["settings"].is_array(), "cached with the whole service");
    let browser = app.signed_in("dev", CHROME_UA).await;
    let service = mobile_service(&app);
    let field = format!("functions-{service}");
    let expires = in_days(7);
    let created =
        post_form(&browser, &[("name", "Narrow"), ("service", &service), (&field, SITE_INFO), ("expires", &expires)])
            .await;
    let narrow = created.input("newkey").unwrap();
    for _ in 0..2 {
        assert_access_exception(&ws.call(&narrow, config, &[]).await, "the personal token, cached or not");
        assert_eq!(ws.call(&narrow, SITE_INFO, &[]).await["functions"].as_array().unwrap().len(), 1);
    }
    // An ordinary token cached after the personal one still has the whole service.
    let (_, ordinary_after) = app.key_for(dev).named("Tablet").create();
    for token in [&ordinary_after, &ordinary_first] {
        assert!(ws.call(token, config, &[]).await["settings"].is_array(), "an ordinary token keeps its service");
        assert!(ws.call(token, SITE_INFO, &[]).await["functions"].as_array().unwrap().len() > 1);
    }
    // A second instance on the same database warms its cache from the rows: the same holds there.
    let second = spawn_app_with(Options { database_url: Some(app.database_url.clone()), ..Default::default() });
    let ws2 = second.ws_client(MOODLE_APP_UA);
    for _ in 0..50 {
        // Whether the warm-up has run yet or not, the answers are the same.
        assert_access_exception(&ws2.call(&narrow, config, &[]).await, "on the second instance");
        assert!(ws2.call(&ordinary_first, config, &[]).await["settings"].is_array());
    }
}
