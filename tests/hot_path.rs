//! The cached hot path is never late: a token revoked through the page or the admin console is
//! refused on the very next request, while other requests hammer the same token.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

async fn hammer_then_revoke(revoke_through_admin: bool) {
    const TASKS: usize = 8;
    /// Calls each task has answered after the revocation before the load stops.
    const AFTER: u32 = 5;
    let app = spawn_app();
    app.create_user("root", true);
    app.create_user("alice", false);
    let token = app.ws_client(MOODLE_APP_UA).token("alice", &[]).await;
    let key = app.key_of(&token).id;
    let marker = app.ws_client(MOODLE_APP_UA).token("root", &[]).await;
    // Tasks served before the revocation; tasks that have had AFTER calls answered after it.
    let (serving, done_after) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (revoked, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let mut load = Vec::new();
    for _ in 0..TASKS {
        let ws = app.ws_client(MOODLE_APP_UA);
        let (token, serving, done_after, revoked, stop) =
            (token.clone(), serving.clone(), done_after.clone(), revoked.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut served, mut late, mut sent_after) = (0u32, 0u32, 0u32);
            while !stop.load(Ordering::SeqCst) {
                let sent_after_revocation = revoked.load(Ordering::SeqCst);
                let answer = ws.call(&token, "core_webservice_get_site_info", &[]).await;
                let ok = answer["username"] == "alice";
                assert!(ok || answer["errorcode"] == "invalidtoken", "served or refused, nothing else: {answer}");
                if ok {
                    served += 1;
                    if served == 1 {
                        serving.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if sent_after_revocation {
                    sent_after += 1;
                    late += u32::from(ok);
                    if sent_after == AFTER {
                        done_after.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            (served, late, sent_after)
        }));
    }
    // The token is under load: every task has been served before the revocation starts.
    assert!(wait_until(|| serving.load(Ordering::SeqCst) == TASKS).await, "every task was served");
    if revoke_through_admin {
        let admin = app.signed_in("root", CHROME_UA).await;
        let sesskey = admin.keys_page().await.hidden("sesskey").unwrap();
        let id = key.to_string();
        let done =
            admin.post("/admin/userkeys/revoke.php", &[("sesskey", &sesskey), ("key", &id), ("confirm", "1")]).await;
        assert_eq!(done.flash().as_deref(), Some("Revoked 1 key."), "{done}");
    } else {
        let owner = app.signed_in("alice", CHROME_UA).await;
        let done = owner.confirm(&format!("action=revoke&key={key}")).await;
        assert!(done.flash().is_some_and(|m| m.starts_with("Revoked “")), "{done}");
    }
    revoked.store(true, Ordering::SeqCst);
    let all_answered = wait_until(|| done_after.load(Ordering::SeqCst) == TASKS).await;
    stop.store(true, Ordering::SeqCst);
    let mut served = 0;
    for task in load {
        let (task_served, late, sent_after) = task.await.unwrap();
        assert!(task_served > 0, "every task was served before the revocation");
        assert!(sent_after >= AFTER, "every task sent {AFTER} calls after the revocation answered ({sent_after})");
        assert_eq!(late, 0, "a request sent after the revocation answered was served");
        served += i64::from(task_served);
    }
    assert!(all_answered);
    // Every call served was a real use of the token, counted once: a later use of another key
    // written and folded means the token's count is final.
    assert_eq!(
        app.ws_client(MOODLE_APP_UA).call(&marker, "core_webservice_get_site_info", &[]).await["username"],
        "root"
    );
    assert!(app.usage_written_through(app.key_of(&marker).id, 1).await, "the marker's use was written");
    assert_eq!(app.with_db(|conn| userkeys::db::usage::total_hits(conn, key)), served, "one use per call served");
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
    let production = spawn_app();
    let pong = production.ws_client("curl/8.5").client.get(production.url("/ping")).send().await.unwrap();
    assert_eq!(pong.status(), 404, "a site not started for a benchmark has no /ping");
    let app =
        spawn_app_with(Options { configure: Box::new(|config| config.bench_endpoints = true), ..Default::default() });
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
