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
    /// The user whose username and password these are, if they may sign in now. Known and
    /// unknown usernames are throttled, checked and answered alike.
    pub async fn sign_in(&self, username: &str, password: &str, channel: Channel, client: &Client) -> CoreResult<User> {
        let login: String = username.trim().to_lowercase().chars().take(100).collect();
        let web_service = channel == Channel::WebService;
        let reservation = accounts::reserve_attempt(&self.db, login.clone(), client.ip_string()).await?;
        let lookup = login.clone();
        let user = self.db.read(move |conn| accounts::find_by_login_name(conn, &lookup)).await?;
        let reservation = match reservation {
            Ok(id) => accounts::Reservation::new(&self.db, id),
            Err(wait) => {
                let user_id = user.map(|u| u.id);
                accounts::record_sign_in_failure(&self.db, web_service, user_id, client.ip_string(), "throttled")
                    .await?;
                return Err(CoreError::SignIn(SignInRefusal::Throttled { seconds: wait.num_seconds().max(1) }));
            }
        };
        // For an unknown user a dummy hash is checked, so the time taken tells nothing.
        let password_ok = self.passwords.matches(user.as_ref(), password).await;
        match user {
            Some(u) if password_ok => {
                reservation.release().await?;
                if u.suspended {
                    accounts::record_sign_in_failure(
                        &self.db,
                        web_service,
                        Some(u.id),
                        client.ip_string(),
                        "suspended",
                    )
                    .await?;
                    return Err(CoreError::SignIn(SignInRefusal::Suspended));
                }
                Ok(u)
            }
            other => {
                reservation.keep().await?;
                let reason = if other.is_some() { "wrong password" } else { "unknown username" };
                accounts::record_sign_in_failure(
                    &self.db,
                    web_service,
                    other.map(|u| u.id),
                    client.ip_string(),
                    reason,
                )
                .await?;
                Err(CoreError::SignIn(SignInRefusal::Invalid))
            }
        }
    }
}
