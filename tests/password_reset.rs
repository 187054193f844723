//! Password reset by email, through a real SMTP server: asked for on the sign-in page, mailed,
//! opened once, and every old session and token ends; a help desk makes a link by hand; a site
//! without mail offers none.

mod common;

use common::smtp::{body_text, SmtpSink};
use common::*;

fn with_mail(sink: &SmtpSink) -> TestApp {
    let url = sink.url();
    spawn_app_with(Options { configure: Box::new(move |c| c.smtp_url = Some(url)), ..Default::default() })
}

/// The reset link in the one message mailed to `address`, once it has arrived.
async fn link_mailed_to(sink: &SmtpSink, address: &str) -> String {
    assert!(wait_until(|| sink.messages().iter().any(|m| m.contains(address))).await, "a message to {address}");
    let messages: Vec<String> = sink.messages().into_iter().filter(|m| m.contains(address)).collect();
    assert_eq!(messages.len(), 1, "one message: {messages:?}");
    let body = body_text(&messages[0]);
    let start = body.find("http").unwrap_or_else(|| panic!("a link in {body}"));
    body[start..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
async fn a_mailed_link_sets_a_new_password_once_and_ends_every_old_session() {
    let sink = SmtpSink::start();
    let app = with_mail(&sink);
    app.create_user("alice", false);
    let signed_in = app.signed_in("alice", CHROME_UA).await;
    let phone = app.ws_client(MOODLE_APP_UA);
    let token = phone.token("alice", &[]).await;

    let visitor = app.browser(FIREFOX_UA);
    let login = visitor.get("/login/index.php").await;
    assert!(login.contains("id=\"forgotten\""), "{login}");
    let form = visitor.get("/login/forgot_password.php").await;
    let logintoken = form.hidden("logintoken").unwrap();
    let sent = visitor.post("/login/forgot_password.php", &[("who", "alice"), ("logintoken", &logintoken)]).await;
    assert!(sent.contains("id=\"resetsent\""), "{sent}");
    // An unknown name gets the very same answer, and no mail.
    let form = visitor.get("/login/forgot_password.php").await;
    let logintoken = form.hidden("logintoken").unwrap();
    let unknown = visitor.post("/login/forgot_password.php", &[("who", "nobody"), ("logintoken", &logintoken)]).await;
    assert_eq!(unknown.status, sent.status);
    assert!(unknown.contains("id=\"resetsent\""));
    // A name longer than any account's is refused beside the form, as a mistake, not a fault.
    let huge = "x".repeat(6000);
    let form = visitor.get("/login/forgot_password.php").await;
    let logintoken = form.hidden("logintoken").unwrap();
    let oversized = visitor.post("/login/forgot_password.php", &[("who", &huge), ("logintoken", &logintoken)]).await;
    assert_eq!(oversized.status, 400, "{oversized}");
    assert!(oversized.contains("Type your username or your email address."), "{oversized}");
    let forged = visitor.post("/login/forgot_password.php", &[("who", "alice"), ("logintoken", "forged")]).await;
    assert_eq!(forged.status, 403, "a form from another site sends nothing");

    let link = link_mailed_to(&sink, "alice@example.org").await;
    let message = body_text(&sink.messages()[0]);
    assert!(message.contains("works once"), "{message}");
    let path = &link[link.find("/login/").unwrap()..];

    // The pending link is on alice's page, like any key.
    assert_eq!(signed_in.keys_page().await.entries_of_kind("Password reset link"), 1);

    let page = visitor.get(path).await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.contains("<strong>alice</strong>"), "{page}");
    let token_field = page.hidden("token").unwrap();
    let mismatch = visitor
        .post(
            "/login/reset_password.php",
            &[("token", &token_field), ("new", "brand-new-pass"), ("confirm", "other-pass-1")],
        )
        .await;
    assert_eq!(mismatch.status, 400);
    let done = visitor
        .post(
            "/login/reset_password.php",
            &[("token", &token_field), ("new", "brand-new-pass"), ("confirm", "brand-new-pass")],
        )
        .await;
    assert!(done.url.starts_with("/login/index.php"), "{done}");
    assert!(done.contains("Your password was changed."), "{done}");

    assert!(signed_in.keys_page().await.url.starts_with("/login/index.php"), "the old session ended");
    assert_eq!(phone.call(&token, "core_webservice_get_site_info", &[]).await["errorcode"], "invalidtoken");
    assert!(visitor.sign_in("alice", "brand-new-pass").await.contains("Your keys"));
    let again = app.browser(FIREFOX_UA).get(path).await;
    assert_eq!(again.status, 403, "a link works once: {again}");
    assert!(again.contains("cannot be used"));
}

#[tokio::test]
async fn a_help_desk_makes_a_link_and_a_site_without_mail_offers_none() {
    let app = spawn_app();
    let helper = app.create_user("helper", false);
    app.assign_role(helper, "helpdesk");
    let bob = app.create_user("bob", false);
    let admin = app.create_user("root", true);

    let login = app.browser(CHROME_UA).get("/login/index.php").await;
    assert!(!login.contains("id=\"forgotten\""), "no mail, no link: {login}");
    assert_eq!(app.browser(CHROME_UA).get("/login/forgot_password.php").await.status, 403);

    let desk = app.signed_in("helper", CHROME_UA).await;
    let sesskey = desk.keys_page().await.hidden("sesskey").unwrap();
    let made = desk.post("/admin/userkeys/resetlink.php", &[("sesskey", &sesskey), ("id", &bob.to_string())]).await;
    assert_eq!(made.status, 200, "{made}");
    let link = made.input("newkey").unwrap();
    let path = &link[link.find("/login/").unwrap()..];
    let visitor = app.browser(FIREFOX_UA);
    let page = visitor.get(path).await;
    assert!(page.contains("<strong>bob</strong>"), "{page}");
    let above = desk.post("/admin/userkeys/resetlink.php", &[("sesskey", &sesskey), ("id", &admin.to_string())]).await;
    assert_eq!(above.status, 403, "not for a site admin: {above}");
    let audit = app.with_db(|conn| userkeys::db::audit::list(conn, &Default::default(), 0, 1000));
    assert!(audit.iter().any(|e| e.action == "key_issued"
        && e.key_type.as_deref() == Some("password_reset")
        && e.actor_id == Some(helper)
        && e.target_user_id == Some(bob)));
}
