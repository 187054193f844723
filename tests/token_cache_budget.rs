//! The token cache is bounded by its memory budget, evicts rather than starting over, and stays
//! correct for what it evicted: with a cache far smaller than the site's tokens, every token
//! still validates (misses read the database), memory stays within the budget, and a token
//! evicted and cached again is still refused at once when revoked.

mod common;

use common::*;

/// The smallest budget there is (64 KiB: a few hundred tokens), and the counters served.
fn tiny_cache() -> TestApp {
    spawn_app_with(Options {
        configure: Box::new(|c| {
            c.token_cache = "on".into();
            c.token_cache_mb = 0;
            c.bench_endpoints = true;
        }),
        ..Default::default()
    })
}

async fn stats(app: &TestApp) -> serde_json::Value {
    reqwest::get(format!("{}/bench/token-cache", app.base)).await.unwrap().json().await.unwrap()
}

fn n(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("a number: {v}"))
}

#[tokio::test]
async fn far_more_tokens_than_the_budget_all_validate_within_it() {
    let app = tiny_cache();
    let users: Vec<i64> = (0..4).map(|i| app.create_user(&format!("user{i}"), false)).collect();
    let tokens: Vec<(usize, String)> =
        (0..1500).map(|i| (i % users.len(), app.key_for(users[i % users.len()]).create().1)).collect();
    let ws = app.ws_client(MOODLE_APP_UA);
    for round in 0..2 {
        for (user, token) in &tokens {
            let answer = ws.call(token, "core_webservice_get_site_info", &[]).await;
            assert_eq!(answer["username"], format!("user{user}"), "round {round}: {answer}");
        }
    }
    let s = stats(&app).await;
    assert!(n(&s["weight_bytes"]) <= n(&s["budget_bytes"]), "{s}");
    assert!(n(&s["tokens"]) > 100 && n(&s["tokens"]) < 1000, "evicted, not cleared: {s}");
    assert!(n(&s["misses"]) > 1500, "the second round read the database again: {s}");
}

#[tokio::test]
async fn a_token_evicted_and_cached_again_is_refused_at_once_when_revoked() {
    let app = tiny_cache();
    app.create_user("alice", false);
    let bob = app.create_user("bob", false);
    // Enough other tokens to fill the cache, then alice's, then the others again: alice's,
    // unused since, is evicted. (Made first: a client idle while they are made would find its
    // connection closed.)
    let others: Vec<String> = (0..1200).map(|_| app.key_for(bob).create().1).collect();
    let ws = app.ws_client(MOODLE_APP_UA);
    let token = ws.token("alice", &[]).await;
    let key = app.key_of(&token).id;
    for other in &others {
        assert_eq!(ws.call(other, "core_webservice_get_site_info", &[]).await["username"], "bob");
    }
    assert_eq!(ws.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    for other in &others {
        assert_eq!(ws.call(other, "core_webservice_get_site_info", &[]).await["username"], "bob");
    }
    let before = n(&stats(&app).await["misses"]);
    assert_eq!(ws.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
    assert_eq!(n(&stats(&app).await["misses"]), before + 1, "it had been evicted, and was read again");
    // Cached again: a hit now. (A read that overlapped some other write is not cached, by
    // design, so the next call may read once more; within a few calls it is a hit.)
    let mut cached = false;
    for _ in 0..20 {
        let before = n(&stats(&app).await["hits"]);
        assert_eq!(ws.call(&token, "core_webservice_get_site_info", &[]).await["username"], "alice");
        if n(&stats(&app).await["hits"]) == before + 1 {
            cached = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(cached, "the token was cached again");
    let browser = app.signed_in("alice", CHROME_UA).await;
    browser.confirm(&format!("action=revoke&key={key}")).await;
    let refused = ws.call(&token, "core_webservice_get_site_info", &[]).await;
    assert_eq!(refused["errorcode"], "invalidtoken", "{refused}");
    // Bob's, evicted or not, still work.
    assert_eq!(ws.call(&others[0], "core_webservice_get_site_info", &[]).await["username"], "bob");
}
