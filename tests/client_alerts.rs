//! New-client alerts and keys that expire unused, end to end: a key used by a client or from a
//! network new to it shows a notice on its owner's page and sends one mail an hour through a
//! real SMTP server; the first client, and the same client in the same /24, are not news; "It
//! was me" dismisses a notice (audited), "Revoke it" goes through the usual confirmation. Keys
//! of types the site expires unused are revoked by the background job ("expired unused") and
//! the page says beforehand by when; the admin's list filters on it.

mod common;

use chrono::Duration;
use common::smtp::{body_text, SmtpSink};
use common::*;
use diesel::prelude::*;
use userkeys::config::UnusedLimits;
use userkeys::db::schema::{key_last_use, user_keys};

const THUNDERBIRD: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.0";
const NEXTCLOUD: &str = "Nextcloud Webcal Service";
const GOOGLE: &str = "Google-Calendar-Importer";

/// A calendar application fetching the calendar with `secret`, from `ip` (behind the trusted proxy).
async fn fetch_calendar(app: &TestApp, user_id: i64, secret: &str, agent: &str, ip: &str) -> u16 {
    let url = app.url(&format!(
        "/calendar/export_execute.php?userid={user_id}&authtoken={secret}&preset_what=all&preset_time=recentupcoming"
    ));
    let client = reqwest::Client::builder().user_agent(agent).build().unwrap();
    client.get(url).header("X-Forwarded-For", ip).send().await.unwrap().status().as_u16()
}

/// The ids of the new-client notices on a keys page, newest first.
fn alert_ids(page: &Page) -> Vec<i64> {
    page.body
        .match_indices("id=\"alert-")
        .filter_map(|(i, m)| {
            let rest = &page.body[i + m.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

fn mails_to(sink: &SmtpSink, address: &str) -> Vec<String> {
    sink.messages().into_iter().filter(|m| m.contains(address)).map(|m| body_text(&m)).collect()
}

/// Long enough for the upkeep (every second here) to have run twice.
async fn two_upkeep_runs() {
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
}

#[tokio::test]
async fn a_new_client_is_told_on_the_page_and_by_one_mail_an_hour() {
    let sink = SmtpSink::start();
    let url = sink.url();
    let app = spawn_app_with(Options {
        configure: Box::new(move |c| {
            c.smtp_url = Some(url);
            c.trust_proxy = true;
            c.upkeep_seconds = 1;
        }),
        ..Default::default()
    });
    let alice = app.create_user("alice", false);
    let browser = app.signed_in("alice", CHROME_UA).await;
    let (key, secret) = app.key_for(alice).of_type("calendar_export").named("Thunderbird at home").create();

    // Its first client is not news, nor is the same client on another address of the same /24.
    assert_eq!(fetch_calendar(&app, alice, &secret, THUNDERBIRD, "198.51.100.10").await, 200);
    assert_eq!(app.usage_hits(key, 1).await, 1);
    assert_eq!(fetch_calendar(&app, alice, &secret, THUNDERBIRD, "198.51.100.77").await, 200);
    assert_eq!(app.usage_hits(key, 2).await, 2);
    two_upkeep_runs().await;
    assert!(mails_to(&sink, "alice@example.org").is_empty(), "{:?}", sink.messages());
    assert!(alert_ids(&browser.keys_page().await).is_empty());

    // A new client: a notice on the page, and a mail naming it with a link to the key.
    assert_eq!(fetch_calendar(&app, alice, &secret, NEXTCLOUD, "203.0.113.4").await, 200);
    assert!(wait_until(|| !mails_to(&sink, "alice@example.org").is_empty()).await, "a mail arrives");
    let mail = &mails_to(&sink, "alice@example.org")[0];
    assert!(mail.contains("Nextcloud Calendar (subscription)"), "{mail}");
    assert!(mail.contains("203.0.113.4"), "{mail}");
    assert!(mail.contains(&format!("/user/managetoken.php#key-{key}")), "{mail}");
    let raw = sink.messages().into_iter().find(|m| m.contains("alice@example.org")).unwrap();
    assert!(raw.contains("Subject: Your calendar export key"), "{raw}");

    // A second new client within the hour: on the page, but no second mail.
    assert_eq!(fetch_calendar(&app, alice, &secret, GOOGLE, "192.0.2.9").await, 200);
    assert_eq!(app.usage_hits(key, 4).await, 4);
    two_upkeep_runs().await;
    assert_eq!(mails_to(&sink, "alice@example.org").len(), 1, "one mail an hour");
    let page = browser.keys_page().await;
    let alerts = alert_ids(&page);
    assert_eq!(alerts.len(), 2, "{page}");
    assert!(page.contains("Your calendar export key"), "{page}");
    assert!(page.contains("was used by a new client"), "{page}");
    assert!(page.contains("Google Calendar") && page.contains("192.0.2.9"), "{page}");
    assert!(page.contains(&format!("href=\"#key-{key}\"")), "{page}");
    let (google, nextcloud) = (alerts[0], alerts[1]);

    // "It was me" needs the form's key, dismisses the notice and is audited.
    let sesskey = page.hidden("sesskey").unwrap();
    let forged = browser
        .post(
            "/user/managetoken.php",
            &[("sesskey", "forged"), ("action", "dismissalert"), ("alert", &google.to_string())],
        )
        .await;
    assert_ne!(forged.status, 200, "{forged}");
    assert_eq!(alert_ids(&browser.keys_page().await).len(), 2);
    let done = browser
        .post(
            "/user/managetoken.php",
            &[("sesskey", &sesskey), ("action", "dismissalert"), ("alert", &google.to_string())],
        )
        .await;
    assert!(done.flash().is_some_and(|f| f.contains("Google Calendar")), "{done}");
    assert_eq!(alert_ids(&done), vec![nextcloud]);
    let audit = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 100));
    assert!(audit.iter().any(|e| e.action == "client_alert_dismissed"
        && e.key_id == Some(key)
        && e.actor_id == Some(alice)
        && e.reason.as_deref().is_some_and(|r| r.contains("Google Calendar"))));

    // "Revoke it" asks the usual confirmation, then revokes the key: the feed is refused.
    let confirm = browser
        .post(
            "/user/managetoken.php",
            &[("sesskey", &sesskey), ("action", "revokealert"), ("alert", &nextcloud.to_string())],
        )
        .await;
    assert_eq!(confirm.status, 200, "{confirm}");
    assert!(confirm.contains("Revoke “Thunderbird at home”?"), "{confirm}");
    assert_eq!(confirm.hidden("key"), Some(key.to_string()));
    let fields = [
        ("sesskey", confirm.hidden("sesskey").unwrap()),
        ("action", confirm.hidden("action").unwrap()),
        ("key", key.to_string()),
    ];
    let form: Vec<(&str, &str)> = fields.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let revoked = browser.post("/user/managetoken.php", &form).await;
    assert!(revoked.flash().is_some_and(|f| f.contains("Revoked “Thunderbird at home”")), "{revoked}");
    assert!(alert_ids(&revoked).is_empty(), "a revoked key's notices go with it");
    assert_eq!(fetch_calendar(&app, alice, &secret, NEXTCLOUD, "203.0.113.4").await, 403);

    // A browser's own sessions are never news, however many.
    let _other = app.signed_in("alice", FIREFOX_UA).await;
    two_upkeep_runs().await;
    assert!(alert_ids(&browser.keys_page().await).is_empty());
    assert_eq!(mails_to(&sink, "alice@example.org").len(), 1);
}

#[tokio::test]
async fn a_new_network_is_news_and_a_site_without_mail_still_shows_it() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.trust_proxy = true;
            c.upkeep_seconds = 1;
        }),
        ..Default::default()
    });
    let bob = app.create_user("bob", false);
    let browser = app.signed_in("bob", CHROME_UA).await;
    let (key, secret) = app.key_for(bob).of_type("calendar_export").create();
    assert_eq!(fetch_calendar(&app, bob, &secret, THUNDERBIRD, "2001:db8:1:1::5").await, 200);
    assert_eq!(app.usage_hits(key, 1).await, 1);
    // Same /48: not news. Another /48, same client: news, as a new network.
    assert_eq!(fetch_calendar(&app, bob, &secret, THUNDERBIRD, "2001:db8:1:ffff::9").await, 200);
    assert_eq!(app.usage_hits(key, 2).await, 2);
    assert!(alert_ids(&browser.keys_page().await).is_empty());
    assert_eq!(fetch_calendar(&app, bob, &secret, THUNDERBIRD, "2001:db8:2::1").await, 200);
    assert_eq!(app.usage_hits(key, 3).await, 3);
    let page = browser.keys_page().await;
    assert_eq!(alert_ids(&page).len(), 1, "{page}");
    assert!(page.contains("was used from a new network"), "{page}");
    assert!(page.contains("2001:db8:2::1"), "{page}");
}

/// Moves a key's creation and last use into the past, as time would.
fn age(app: &TestApp, key: i64, created_days_ago: i64, used_days_ago: Option<i64>) {
    let now = userkeys::domain::time::now();
    app.with_db(|conn| {
        let conn: &mut userkeys::db::DbConn = conn;
        diesel::update(user_keys::table.find(key))
            .set(user_keys::created_at.eq(now - Duration::days(created_days_ago)))
            .execute(conn)?;
        diesel::update(key_last_use::table.find(key))
            .set(key_last_use::last_used_at.eq(used_days_ago.map(|d| now - Duration::days(d))))
            .execute(conn)?;
        Ok(())
    });
}

fn revoked_reason(app: &TestApp, key: i64) -> Option<String> {
    let row = app.with_db(|conn| userkeys::db::keys::find(conn, key)).unwrap();
    row.revoked_at.and(row.revoked_reason)
}

#[tokio::test]
async fn keys_unused_too_long_expire_and_the_page_says_by_when() {
    let limits = UnusedLimits(vec![("rss".into(), 30), ("calendar_export".into(), 180)]);
    // Keys are made and aged on an instance whose upkeep does not run: the job's walks go on
    // from where they got to, so a key aged past a walk's place after a run would not be read.
    let setup_limits = limits.clone();
    let setup = spawn_app_with(Options {
        configure: Box::new(move |c| {
            c.expire_unused_days = setup_limits;
            c.upkeep_seconds = 3600;
        }),
        ..Default::default()
    });
    let alice = setup.create_user("alice", false);
    setup.create_user("root", true);
    let rss = |name: &str| setup.key_for(alice).of_type("rss").named(name).create();
    let (never_used, never_secret) = rss("Made 40 days ago, never used");
    let (idle, _) = rss("Last used 31 days ago");
    let (recent, recent_secret) = rss("Used 2 days ago");
    let (fresh, _) = rss("Made today");
    let (lagging, lagging_secret) = rss("Used today, its mark behind");
    let (calendar, _) = setup.key_for(alice).of_type("calendar_export").named("Calendar").create();
    let (token, _) = setup.key_for(alice).named("A phone").create();
    // Used today, and once its mark is written, the mark set back as an overloaded site's
    // coarse marks can lag: the usage table still has today's use, so the key is kept.
    let feed_url = |secret: &str| setup.url(&format!("/rss/file.php/1/{secret}/user/{alice}/rss.xml"));
    assert_eq!(reqwest::get(feed_url(&lagging_secret)).await.unwrap().status(), 200);
    assert_eq!(setup.usage_hits(lagging, 1).await, 1);
    let marked = || setup.with_db(|conn| userkeys::db::keys::find(conn, lagging)).unwrap().last_used_at.is_some();
    assert!(wait_until(marked).await, "the use was marked");
    age(&setup, never_used, 40, None);
    age(&setup, idle, 100, Some(31));
    age(&setup, recent, 40, Some(2));
    age(&setup, lagging, 100, Some(31));
    age(&setup, calendar, 100, Some(90));
    age(&setup, token, 400, Some(300)); // Tokens do not expire unused on this site.

    let app = spawn_app_with(Options {
        database_url: Some(setup.database_url.clone()),
        configure: Box::new(move |c| {
            c.expire_unused_days = limits;
            c.upkeep_seconds = 1;
        }),
        ..Default::default()
    });
    assert!(
        wait_until(|| revoked_reason(&app, never_used).is_some() && revoked_reason(&app, idle).is_some()).await,
        "the job revokes keys unused past the limit"
    );
    assert_eq!(revoked_reason(&app, never_used).as_deref(), Some("expired unused"));
    assert_eq!(revoked_reason(&app, idle).as_deref(), Some("expired unused"));
    for kept in [recent, fresh, lagging, calendar, token] {
        assert_eq!(revoked_reason(&app, kept), None, "key {kept} is kept");
    }
    let mark = app.with_db(|conn| userkeys::db::keys::find(conn, lagging)).unwrap().last_used_at;
    assert!(
        mark.is_some_and(|at| at > userkeys::domain::time::now() - Duration::days(1)),
        "its mark caught up: {mark:?}"
    );
    let audit = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 200));
    for key in [never_used, idle] {
        assert!(audit.iter().any(|e| e.action == "key_revoked"
            && e.key_id == Some(key)
            && e.actor_id.is_none()
            && e.reason.as_deref() == Some("expired unused")));
    }
    // Refused once revoked.
    let feed = |secret: &str| app.url(&format!("/rss/file.php/1/{secret}/user/{alice}/rss.xml"));
    assert_eq!(reqwest::get(feed(&never_secret)).await.unwrap().status(), 403);

    // The page says by when each kept key expires if unused: its last use (or creation) + limit.
    let browser = app.signed_in("alice", CHROME_UA).await;
    let page = browser.keys_page().await;
    let day = |at: chrono::NaiveDateTime| {
        let this_year = chrono::Datelike::year(&userkeys::domain::time::now());
        if chrono::Datelike::year(&at) == this_year {
            at.format("%-d %B").to_string()
        } else {
            at.format("%-d %B %Y").to_string()
        }
    };
    let now = userkeys::domain::time::now();
    let fresh_entry = page.entry_block(fresh).unwrap();
    assert!(fresh_entry.contains(&format!("Expires if unused by {}", day(now + Duration::days(30)))), "{fresh_entry}");
    let recent_entry = page.entry_block(recent).unwrap();
    assert!(
        recent_entry.contains(&format!("Expires if unused by {}", day(now + Duration::days(28)))),
        "{recent_entry}"
    );
    let calendar_entry = page.entry_block(calendar).unwrap();
    assert!(calendar_entry.contains(&format!("Expires if unused by {}", day(now + Duration::days(90)))));
    assert!(!page.entry_block(token).unwrap().contains("Expires if unused"), "tokens do not expire unused here");
    assert!(page.entry_block(never_used).is_none(), "revoked keys leave the page");

    // The admin's list: keys that expire unused within N days.
    let admin = app.signed_in("root", CHROME_UA).await;
    let within = |days: i64| {
        let admin = &admin;
        async move { admin.get(&format!("/admin/userkeys/index.php?expiring={days}")).await }
    };
    let soon = within(29).await;
    assert_eq!(soon.status, 200, "{soon}");
    assert!(soon.contains(&format!("id=\"row-{recent}\"")), "{soon}");
    for absent in [fresh, calendar, token, never_used] {
        assert!(!soon.contains(&format!("id=\"row-{absent}\"")), "key {absent} is not within 29 days: {soon}");
    }
    let later = within(100).await;
    for present in [recent, fresh, calendar] {
        assert!(later.contains(&format!("id=\"row-{present}\"")), "key {present} within 100 days");
    }
    assert!(!later.contains(&format!("id=\"row-{token}\"")));
    assert!(later.contains("if unused"), "{later}");
    assert_eq!(within(-1).await.status, 400);
    // A key kept still opens its feed.
    assert_eq!(reqwest::get(feed(&recent_secret)).await.unwrap().status(), 200);
}
