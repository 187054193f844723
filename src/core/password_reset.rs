//! Password reset: a single-use, short-lived link (a key of the "Password reset links" type,
//! listed on the person's page and revocable there), mailed on request or made by a help desk.
//! Opening it sets a new password, which ends every session and token the old one opened.

use super::valid_key::KeyOwner;
use super::validate::Expected;
use super::{Client, Core, CoreError, CoreResult};
use crate::db::keys::Selection;
use crate::db::models::User;
use crate::domain::time::now;
use crate::keys::ops::{KeyRequest, Revocation, Scope};
use crate::keys::types::password_reset::LIFETIME_MINUTES;
use crate::keys::PASSWORD_RESET;
use crate::mail::Mail;
use std::sync::Arc;

/// A person asking again within this many minutes gets no second mail.
const MINUTES_BETWEEN_MAILS: i64 = 2;

impl Core {
    /// Whether the site can mail reset links.
    pub fn can_mail(&self) -> bool {
        self.mailer.configured()
    }

    /// Someone asks for a reset link by username or email. If an active account with an email
    /// address matches, a link is mailed to that address; the answer (and the time it takes) is
    /// the same whether or not one did, so the form tells nobody which accounts exist.
    pub async fn request_password_reset(&self, username_or_email: &str, client: &Client) -> CoreResult<()> {
        if !self.mailer.configured() {
            return Err(CoreError::NotAllowed(
                "This site cannot send email; ask an administrator for a reset link.".into(),
            ));
        }
        let asked = username_or_email.trim().to_lowercase();
        if asked.is_empty() || asked.len() > 200 {
            return Err(CoreError::Invalid("Type your username or your email address.".into()));
        }
        let since = now() - chrono::Duration::minutes(MINUTES_BETWEEN_MAILS);
        let found = self
            .db
            .read(move |conn| {
                let mut users = crate::accounts::find_by_login_name(conn, &asked)?.into_iter().collect::<Vec<_>>();
                if users.is_empty() && asked.contains('@') {
                    users = crate::db::users::find_by_email(conn, &asked)?;
                }
                let mut due = Vec::new();
                for user in users.into_iter().filter(|u| !u.suspended && u.email.contains('@')) {
                    let last = crate::db::keys::latest_created(conn, user.id, PASSWORD_RESET)?;
                    if last.is_none_or(|at| at <= since) {
                        due.push(user);
                    }
                }
                Ok(due)
            })
            .await?;
        for user in found {
            let link = self.issue_reset_link_for(&user, None, client).await?;
            let mail = Mail {
                to_name: user.fullname.clone(),
                to_address: user.email.clone(),
                subject: format!("Reset your password on {}", self.config.site_name),
                body: format!(
                    "Someone (we hope you) asked to reset the password of {} on {}.\n\n\
                     To choose a new password, open this link within {LIFETIME_MINUTES} minutes. It works once:\n\n{link}\n\n\
                     Choosing a new password signs out every browser and app signed in to your account.\n\
                     If you did not ask for this, ignore this message: your password stays as it is.\n\
                     The request came from {}.\n",
                    user.username,
                    self.config.site_name,
                    client.ip_string()
                ),
            };
            // Sent in the background, so the answer takes as long whether an account matched.
            let mailer = self.mailer.clone();
            tokio::spawn(async move {
                if let Err(e) = mailer.send(mail).await {
                    tracing::warn!(error = %e, "a password reset link could not be mailed");
                }
            });
        }
        Ok(())
    }

    /// A reset link for someone, made by a help desk (`by`), shown once to them.
    pub async fn issue_reset_link(&self, by: i64, user_id: i64, client: &Client) -> CoreResult<String> {
        self.check_may_act_on(by, user_id).await?;
        let user = self.user(user_id).await?;
        if user.suspended {
            return Err(CoreError::Invalid(format!(
                "{} is suspended: a reset link would not open. Lift the suspension first.",
                user.username
            )));
        }
        self.issue_reset_link_for(&user, Some(by), client).await
    }

    /// Issues a new link (the person's earlier ones stop working) and returns its address.
    async fn issue_reset_link_for(&self, user: &User, by: Option<i64>, client: &Client) -> CoreResult<String> {
        let now = now();
        let actor = crate::keys::ops::Actor { user_id: by, ip: Some(client.ip_string()) };
        let replaced = Revocation {
            user_id: user.id,
            selection: Selection::OfType(PASSWORD_RESET.into()),
            scope: Scope::Everything,
            actor: actor.clone(),
            reason: "replaced by a new reset link".into(),
        };
        let request = KeyRequest {
            user_id: user.id,
            key_type: PASSWORD_RESET.into(),
            name: if by.is_some() { "Reset link made by the help desk" } else { "Reset link sent by email" }.into(),
            valid_until: self.registry.policy(PASSWORD_RESET).lifetime.valid_until(now, self.lifetimes()),
            ..Default::default()
        };
        let issued = self.issue_replacing(replaced, request, now).await?;
        let secret = issued.secret.ok_or_else(|| CoreError::Invalid("reset link issued without a secret".into()))?;
        Ok(format!("{}/login/reset_password.php?token={}", self.config.site_root(), secret.expose()))
    }

    /// Whose reset link this is, if it can still be used (it is not used up by asking).
    pub async fn check_reset_link(&self, token: &str, client: &Client) -> CoreResult<Arc<KeyOwner>> {
        let key = self.peek(token, Expected { key_type: PASSWORD_RESET, owner: None }, client).await?;
        Ok(key.user.clone())
    }

    /// Uses a reset link to set a new password; every session and token of the person ends.
    pub async fn reset_password(&self, token: &str, new: &str, client: &Client) -> CoreResult<String> {
        if new.chars().count() < super::accounts::MIN_PASSWORD_CHARS {
            return Err(CoreError::Invalid(format!(
                "A password needs at least {} characters.",
                super::accounts::MIN_PASSWORD_CHARS
            )));
        }
        let key = self.validate(token, Expected { key_type: PASSWORD_RESET, owner: None }, client).await?;
        self.set_password(Some(key.user.id), key.user.id, new, None, Some(client)).await?;
        Ok(key.user.username.clone())
    }
}
