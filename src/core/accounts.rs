//! What happens to an account as a whole: changing its password, suspending it and lifting
//! the suspension; and the rule that keeps administrators from acting above their station.

use super::{Client, Core, CoreError, CoreResult};
use crate::db::keys::Selection;
use crate::db::models::NewAuditEntry;
use crate::domain::password::hash_password;
use crate::domain::time::now;
use crate::keys::ops::{self, Revocation, Scope};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;

impl Core {
    /// Refuses unless `actor` may act on `target`'s account: a site admin's only if the actor is
    /// one too; anyone else's only if every capability the target holds, the actor holds too.
    pub async fn check_may_act_on(&self, actor: i64, target: i64) -> CoreResult<()> {
        if actor == target {
            return Ok(());
        }
        let (actor_user, target_user) = self
            .db
            .read(move |conn| Ok((crate::db::users::find(conn, actor)?, crate::db::users::find(conn, target)?)))
            .await?;
        let (Some(actor_user), Some(target_user)) = (actor_user, target_user) else { return Err(CoreError::NotFound) };
        if actor_user.is_site_admin {
            return Ok(());
        }
        if target_user.is_site_admin {
            return Err(CoreError::NotAllowed("Only a site administrator can do this to a site administrator.".into()));
        }
        // Neither is a site admin here: their roles say what each may do.
        // Only powers over others count: making one's own tokens puts nobody above the help desk.
        let (mine, theirs) = (self.role_capabilities(actor).await?, self.role_capabilities(target).await?);
        if theirs.iter().any(|c| c.is_admin() && !mine.contains(c)) {
            return Err(CoreError::NotAllowed(format!(
                "{} can do things you cannot; ask someone who holds all their permissions.",
                target_user.username
            )));
        }
        Ok(())
    }

    /// Refuses to suspend the last site admin who is not suspended.
    pub(super) async fn check_not_last_admin(&self, target: i64) -> CoreResult<()> {
        let (user, active_admins) = self
            .db
            .read(move |conn| {
                Ok((crate::db::users::find(conn, target)?, crate::db::users::count_active_site_admins(conn)?))
            })
            .await?;
        let user = user.ok_or(CoreError::NotFound)?;
        if user.is_site_admin && !user.suspended && active_admins <= 1 {
            return Err(CoreError::NotAllowed(
                "This is the site's only active administrator; make another one before suspending this one.".into(),
            ));
        }
        Ok(())
    }

    /// Suspends or reinstates an account, audited. `by` is `None` from the command line.
    pub async fn set_suspended(
        &self,
        by: Option<i64>,
        user_id: i64,
        suspended: bool,
        client: Option<&Client>,
    ) -> CoreResult<()> {
        if let Some(by) = by {
            self.check_may_act_on(by, user_id).await?;
        }
        if suspended {
            self.check_not_last_admin(user_id).await?;
        }
        let entry = NewAuditEntry {
            at: now(),
            action: if suspended { "suspended" } else { "unsuspended" }.into(),
            actor_id: by,
            target_user_id: Some(user_id),
            ip: client.map(Client::ip_string),
            ..Default::default()
        };
        self.db
            .write(move |write| {
                crate::db::users::set_suspended(write, user_id, suspended)?;
                crate::db::audit::append(write, &entry)
            })
            .await?;
        Ok(())
    }

    /// A person changes their own password, proving the current one. Their other sessions and
    /// tokens are revoked (unless the site says otherwise); `keep` is the session asking.
    pub async fn change_password(
        &self,
        user_id: i64,
        current: &str,
        new: &str,
        keep: Option<i64>,
        client: &Client,
    ) -> CoreResult<usize> {
        let user = self.user(user_id).await?;
        if !self.passwords.matches(Some(&user), current).await {
            return Err(CoreError::Invalid("Your current password is not right.".into()));
        }
        self.set_password(Some(user_id), user_id, new, keep, Some(client)).await
    }

    /// Sets a password (the person's own, an administrator's doing, or the command line's when
    /// `by` is `None`), audited; then revokes the person's sessions and tokens but `keep`, as
    /// the site's setting says. How many keys were revoked.
    pub async fn set_password(
        &self,
        by: Option<i64>,
        user_id: i64,
        new: &str,
        keep: Option<i64>,
        client: Option<&Client>,
    ) -> CoreResult<usize> {
        if new.chars().count() < MIN_PASSWORD_CHARS {
            return Err(CoreError::Invalid(format!("A password needs at least {MIN_PASSWORD_CHARS} characters.")));
        }
        if let Some(by) = by {
            self.check_may_act_on(by, user_id).await?;
        }
        let new = new.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password(&new))
            .await
            .map_err(|_| CoreError::Invalid("The password could not be set; try again.".into()))?;
        let revoke = self.config.revoke_keys_on_password_change;
        let registry = self.registry.clone();
        let actor = crate::keys::ops::Actor { user_id: by, ip: client.map(Client::ip_string) };
        let now = now();
        Ok(self
            .db
            .write(move |write| {
                crate::db::users::set_password_hash(write, user_id, &hash)?;
                crate::db::audit::append(
                    write,
                    &NewAuditEntry {
                        at: now,
                        action: "password_changed".into(),
                        actor_id: actor.user_id,
                        target_user_id: Some(user_id),
                        ip: actor.ip.clone(),
                        ..Default::default()
                    },
                )?;
                if !revoke {
                    return Ok(0);
                }
                // As Moodle after CVE-2016-7038: a new password ends every other way in that a
                // password opened.
                let request = Revocation {
                    user_id,
                    selection: Selection::OfTypesExcept(registry.sign_in_types(), keep),
                    scope: Scope::Everything,
                    actor: actor.clone(),
                    reason: "password changed".into(),
                };
                ops::revoke(write, &registry, &request, now)
            })
            .await?)
    }
}
