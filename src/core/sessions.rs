//! Web sessions: a key of type `web_session` whose secret is the browser's cookie. Nothing
//! about a session lives in the instance, so any instance serves any request.

use super::valid_key::KeyOwner;
use super::validate::Expected;
use super::{Client, Core, CoreResult};
use crate::db::keys::Selection;
use crate::domain::secret::{constant_time_eq, derive, ClearSecret};
use crate::domain::time::now;
use crate::domain::user_agent::describe_user_agent;
use crate::keys::ops::{self, KeyRequest, Revocation, Scope};
use crate::keys::WEB_SESSION;
use chrono::Duration;
use std::sync::Arc;

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: Arc<KeyOwner>,
    pub key_id: i64,
    /// The CSRF token of this session (Moodle's `sesskey`), derived from its secret.
    pub sesskey: String,
}

impl Session {
    /// Whether a state-changing request carries this session's `sesskey`.
    pub fn sesskey_matches(&self, submitted: Option<&str>) -> bool {
        submitted.is_some_and(|s| constant_time_eq(s.as_bytes(), self.sesskey.as_bytes()))
    }
}

fn sesskey_for(secret: &ClearSecret) -> String {
    derive("sesskey", secret, 20)
}

impl Core {
    /// Starts a session for a user who has just signed in; returns the cookie's secret.
    pub async fn start_session(&self, user_id: i64, client: &Client) -> CoreResult<ClearSecret> {
        let now = now();
        let request = KeyRequest {
            user_id,
            key_type: WEB_SESSION.into(),
            name: describe_user_agent(&client.user_agent),
            valid_until: self.registry.policy(WEB_SESSION).lifetime.valid_until(now, self.lifetimes()),
            ..Default::default()
        };
        let (registry, actor) = (self.registry.clone(), client.actor(Some(user_id)));
        let issued = self.db.write(move |write| ops::issue(write, &registry, request, &actor, now)).await?;
        let secret =
            issued.secret.ok_or_else(|| super::CoreError::Invalid("session issued without a secret".into()))?;
        self.record_use(issued.id, client);
        Ok(secret)
    }

    /// The session whose cookie this is, if it is valid; slides its expiry forward.
    pub async fn resume_session(&self, cookie: &str, client: &Client) -> CoreResult<Session> {
        let key = self.validate(cookie, Expected { key_type: WEB_SESSION, owner: None }, client).await?;
        let now = now();
        let new_expiry = now + self.lifetimes().session;
        // Extend at most once a minute: a page view should not always be a write.
        if key.valid_until.is_none_or(|v| new_expiry - v > Duration::minutes(1)) {
            let id = key.key_id;
            self.db.write(move |write| crate::db::keys::extend(write, id, new_expiry)).await?;
        }
        Ok(Session {
            user: key.user.clone(),
            key_id: key.key_id,
            sesskey: sesskey_for(&ClearSecret::from_client(cookie.trim())),
        })
    }

    /// Signs this browser out.
    pub async fn end_session(&self, session: &Session, client: &Client) -> CoreResult<()> {
        let request = Revocation {
            user_id: session.user.id,
            selection: Selection::One(session.key_id),
            scope: Scope::Everything,
            actor: client.actor(Some(session.user.id)),
            reason: "signed out".into(),
        };
        let registry = self.registry.clone();
        self.db.write(move |write| ops::revoke(write, &registry, &request, now())).await?;
        Ok(())
    }
}
