//! The one sign-in flow, for the sign-in page and `login/token.php` alike: throttling, the
//! password check, and a failure audited with its reason.

use super::error::{CoreError, SignInRefusal};
use super::{Client, Core, CoreResult};
use crate::accounts;
use crate::db::models::User;

/// Where a sign-in comes from; the audit trail tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The site's sign-in page.
    Page,
    /// Moodle's login/token.php.
    WebService,
}

impl Core {
    /// The user whose username and password these are, if they may sign in now.
    pub async fn sign_in(&self, username: &str, password: &str, channel: Channel, client: &Client) -> CoreResult<User> {
        let login = username.trim().to_lowercase();
        let ip = client.ip_string();
        let (user, throttled) = self
            .db
            .read(move |conn| {
                let user = accounts::find_by_login_name(conn, &login)?;
                let throttled = accounts::sign_in_throttled(conn, user.as_ref().map(|u| u.id), &ip)?;
                Ok((user, throttled))
            })
            .await?;
        // Throttled attempts fail without checking the password.
        let password_ok = !throttled && self.passwords.matches(user.as_ref(), password).await;
        match user {
            Some(u) if password_ok && !u.suspended => Ok(u),
            other => {
                let reason = accounts::sign_in_failure(other.as_ref(), password_ok, throttled);
                accounts::record_sign_in_failure(
                    &self.db,
                    channel == Channel::WebService,
                    other.map(|u| u.id),
                    client.ip_string(),
                    reason,
                )
                .await?;
                Err(CoreError::SignIn(match reason {
                    "throttled" => SignInRefusal::Throttled { minutes: accounts::THROTTLE_WINDOW_MINUTES },
                    "suspended" => SignInRefusal::Suspended,
                    _ => SignInRefusal::Invalid,
                }))
            }
        }
    }
}
