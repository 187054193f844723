//! The cached hot path is never late: a token revoked through the page or the admin console is
//! refused on the very next request, while other requests hammer the same token.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

async fn hammer_then_revoke(revoke_through_admin: bool) {
    let app = spawn_app();
    app.create_user("root", true);
    app.create_user("alice", false);
    let token = app.ws_client(MOODLE_APP_UA).token("alice", &[]).await;
    let key = app.key_of(&token).id;
    let revoked = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (ws, token, revoked, stop) = (app.ws_client(MOODLE_APP_UA), token.clone(), revoked.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut late, mut calls) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let sent_after_revocation = revoked.load(Ordering::SeqCst);
                let answer = ws.call(&token, "core_webservice_get_site_info", &[]).await;
                calls += 1;
                if sent_after_revocation && answer["username"] == "alice" {
                    late += 1;
                }
            }
            (late, calls)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    if revoke_through_admin {
        let admin = app.signed_in("root", CHROME_UA).await;
        let sesskey = admin.keys_page().await.hidden("sesskey").unwrap();
        let id = key.to_string();
        let done =
            admin.post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("key", &id), ("confirm", "1")]).await;
        assert!(done.contains("1 key(s) revoked"), "{done}");
    } else {
        let owner = app.signed_in("alice", CHROME_UA).await;
        let done = owner.confirm(&format!("action=revoke&key={key}")).await;
        assert!(done.contains("1 key was revoked"), "{done}");
    }
    revoked.store(true, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for task in load {
        let (late, calls) = task.await.unwrap();
        assert_eq!(late, 0, "a request sent after the revocation answered was served");
        total += calls;
    }
    assert!(total > 50, "the token was under load ({total} calls)");
}

#[tokio::test]
async fn a_revocation_on_the_page_is_never_late_under_load() {
    hammer_then_revoke(false).await;
}

#[tokio::test]
async fn a_revocation_in_the_admin_console_is_never_late_under_load() {
    hammer_then_revoke(true).await;
}

/// The benchmark's two ceilings: `GET /ping` does nothing; `POST /ping` reads a call's form body
/// and answers as many bytes as it is asked for, with the REST server's headers, at most 64 KiB.
#[tokio::test]
async fn the_benchmarks_ceilings_answer_as_asked() {
    let app = spawn_app();
    let client = reqwest::Client::new();
    let pong = client.get(app.url("/ping")).send().await.unwrap();
    assert_eq!(pong.text().await.unwrap(), "pong");
    let form = [("wstoken", "x"), ("wsfunction", "core_webservice_get_site_info"), ("moodlewsrestformat", "json")];
    let shaped = client.post(app.url("/ping?bytes=1635")).form(&form).send().await.unwrap();
    assert_eq!(shaped.status(), 200);
    assert_eq!(shaped.headers()["content-type"], "application/json");
    assert_eq!(shaped.headers()["cache-control"], "private, must-revalidate, pre-check=0, post-check=0, max-age=0");
    let body = shaped.text().await.unwrap();
    assert_eq!(body.len(), 1635);
    assert!(serde_json::from_str::<String>(&body).is_ok(), "a JSON string: {body:.40}");
    for query in ["bytes=99999999", "bytes=-1", "bytes=abc", ""] {
        let answer = client.post(app.url(&format!("/ping?{query}"))).form(&form).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{query}");
        assert!(answer.text().await.unwrap().len() <= 64 * 1024, "{query}");
    }
}
