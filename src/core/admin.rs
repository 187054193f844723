//! What the site's administrators do: capabilities, issuing a token for someone, revoking any
//! keys, force logout, and the site's switches (services and key types on and off).

use super::{Client, Core, CoreError, CoreResult};
use crate::db::keys::Selection;
use crate::db::models::NewAuditEntry;
use crate::domain::capability::Capability;
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::time::now;
use crate::keys::ops::{self, KeyRequest, Revocation, Scope};
use crate::keys::{WEBSERVICE_TOKEN, WEB_SESSION};
use chrono::NaiveDateTime;
use std::collections::HashSet;

/// A token an administrator issues for someone.
#[derive(Clone, Debug)]
pub struct IssueToken {
    pub username: String,
    pub service_id: i64,
    pub name: String,
    pub ip_restriction: Option<IpRestriction>,
    pub valid_until: Option<NaiveDateTime>,
}

/// The site's switches, as the admin page shows them.
#[derive(Clone, Debug)]
pub struct Switches {
    pub services: Vec<Switch>,
    pub types: Vec<Switch>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Switch {
    pub id: String,
    pub name: String,
    pub detail: String,
    pub enabled: bool,
    /// Cannot be switched off (web sessions: nobody could sign in).
    pub locked: bool,
    pub visible: bool,
}

/// What a switch turns on or off.
#[derive(Clone, Debug)]
pub enum SwitchTarget {
    Service(i64),
    KeyType(String),
}

impl Core {
    /// What a person may do on the admin side: a site admin everything, others their roles'.
    pub async fn capabilities_of(&self, user_id: i64) -> CoreResult<HashSet<Capability>> {
        let (user, names) = self
            .db
            .read(move |conn| {
                Ok((crate::db::users::find(conn, user_id)?, crate::db::roles::capabilities_of(conn, user_id)?))
            })
            .await?;
        if user.as_ref().is_some_and(|u| u.is_site_admin) {
            return Ok(Capability::ALL.into_iter().collect());
        }
        Ok(names.iter().filter_map(|n| Capability::from_name(n)).collect())
    }

    /// What a person's roles let them do (a site admin may do everything besides).
    pub(super) async fn role_capabilities(&self, user_id: i64) -> CoreResult<HashSet<Capability>> {
        let names = self.db.read(move |conn| crate::db::roles::capabilities_of(conn, user_id)).await?;
        Ok(names.iter().filter_map(|n| Capability::from_name(n)).collect())
    }

    /// The services a token may be issued for: (id, name, enabled).
    pub async fn services(&self) -> CoreResult<Vec<(i64, String, bool)>> {
        let all = self.db.read(crate::db::services::all).await?;
        Ok(all.into_iter().map(|s| (s.id, s.name, s.enabled)).collect())
    }

    /// Issues a web-service token for someone; returns (owner's username, service name, token).
    pub async fn issue_token(
        &self,
        by: i64,
        request: IssueToken,
        client: &Client,
    ) -> CoreResult<(String, String, String)> {
        let IssueToken { username, service_id, name, ip_restriction, valid_until } = request;
        let lookup = username.trim().to_lowercase();
        let (user, service) = self
            .db
            .read(move |conn| {
                Ok((crate::db::users::find_by_username(conn, &lookup)?, crate::db::services::find(conn, service_id)?))
            })
            .await?;
        let user = user.ok_or_else(|| CoreError::Invalid(format!("There is no user “{}”.", username.trim())))?;
        self.check_may_act_on(by, user.id).await?;
        if user.suspended {
            return Err(CoreError::Invalid(format!(
                "{} is suspended; a token for them would not work.",
                user.username
            )));
        }
        let service = service.ok_or_else(|| CoreError::Invalid("Choose a service.".into()))?;
        let now = now();
        if valid_until.is_some_and(|v| v <= now) {
            return Err(CoreError::Invalid("Valid until is in the past: a token must be valid for some time.".into()));
        }
        let request = KeyRequest {
            user_id: user.id,
            key_type: WEBSERVICE_TOKEN.into(),
            name,
            service_id: Some(service.id),
            ip_restriction,
            valid_until,
            ..Default::default()
        };
        let (registry, actor) = (self.registry.clone(), client.actor(Some(by)));
        let issued = self.db.write(move |write| ops::issue(write, &registry, request, &actor, now)).await?;
        let token = issued.secret.map(|s| s.expose().to_owned()).unwrap_or_default();
        Ok((user.username, service.name, token))
    }

    /// Revokes any keys, by id, each from its owner; how many were revoked.
    pub async fn revoke_keys(&self, by: i64, ids: Vec<i64>, reason: String, client: &Client) -> CoreResult<usize> {
        let lookup = ids.clone();
        let mut owners: Vec<i64> = self
            .db
            .read(move |conn| {
                let mut owners = Vec::new();
                for id in lookup {
                    owners.extend(crate::db::keys::find(conn, id)?.map(|k| k.user_id));
                }
                Ok(owners)
            })
            .await?;
        owners.sort_unstable();
        owners.dedup();
        for owner in owners {
            self.check_may_act_on(by, owner).await?;
        }
        let (registry, actor) = (self.registry.clone(), client.actor(Some(by)));
        let reason = if reason.trim().is_empty() { "revoked by an administrator".to_owned() } else { reason };
        Ok(self
            .db
            .write(move |write| {
                let mut count = 0;
                for id in ids {
                    if let Some(key) = crate::db::keys::find(write, id)? {
                        let request = Revocation {
                            user_id: key.user_id,
                            selection: Selection::One(id),
                            scope: Scope::Everything,
                            actor: actor.clone(),
                            reason: reason.clone(),
                        };
                        count += ops::revoke(write, &registry, &request, now())?;
                    }
                }
                Ok(count)
            })
            .await?)
    }

    /// Ends every way into one account at once, optionally suspending it; how many keys went.
    pub async fn force_logout(
        &self,
        by: i64,
        user_id: i64,
        suspend: bool,
        reason: String,
        client: &Client,
    ) -> CoreResult<usize> {
        let (registry, actor) = (self.registry.clone(), client.actor(Some(by)));
        self.check_may_act_on(by, user_id).await?;
        if suspend {
            self.check_not_last_admin(user_id).await?;
        }
        Ok(self
            .db
            .write(move |write| ops::force_logout(write, &registry, user_id, suspend, &actor, &reason, now()))
            .await?)
    }

    /// The site's services and key types, each with its switch.
    pub async fn switches(&self) -> CoreResult<Switches> {
        let registry = self.registry.clone();
        Ok(self
            .db
            .read(move |conn| {
                let switches = super::listings::SiteSwitches::read(conn)?;
                let services = crate::db::services::all(conn)?
                    .into_iter()
                    .map(|s| Switch {
                        id: s.id.to_string(),
                        name: s.name,
                        detail: s.shortname,
                        enabled: s.enabled,
                        locked: false,
                        visible: true,
                    })
                    .collect();
                let types = registry
                    .all()
                    .map(|t| Switch {
                        id: t.id.clone(),
                        name: t.label.clone(),
                        detail: t.id.clone(),
                        enabled: switches.type_enabled(&registry, &t.id),
                        locked: t.id == WEB_SESSION,
                        visible: t.visible,
                    })
                    .collect();
                Ok(Switches { services, types })
            })
            .await?)
    }

    /// What switching a service or key type off would stop: its name, its active keys and the
    /// people who hold them.
    pub async fn switch_impact(&self, target: &SwitchTarget) -> CoreResult<(String, i64, i64)> {
        let (name, key_type, service_id) = match target {
            SwitchTarget::Service(id) => {
                let id = *id;
                let service = self.db.read(move |conn| crate::db::services::find(conn, id)).await?;
                (service.ok_or(CoreError::NotFound)?.name, None, Some(id))
            }
            SwitchTarget::KeyType(t) => {
                let t = self.registry.get(t).ok_or_else(|| CoreError::Invalid("There is no such key type.".into()))?;
                if t.id == WEB_SESSION {
                    return Err(CoreError::Invalid("Web sessions cannot be disabled: nobody could sign in.".into()));
                }
                (t.label.clone(), Some(t.id.clone()), None)
            }
        };
        let now = now();
        let (keys, people) =
            self.db.read(move |conn| crate::db::keys::count_active(conn, key_type.as_deref(), service_id, now)).await?;
        Ok((name, keys, people))
    }

    /// Turns a service or key type on or off, audited. Keys of what is off are refused at
    /// validation and shown as disabled; turning it on again restores them.
    pub async fn set_switch(&self, by: i64, target: SwitchTarget, enable: bool, client: &Client) -> CoreResult<()> {
        let (noun, name) = match &target {
            SwitchTarget::Service(id) => {
                let id = *id;
                let service = self.db.read(move |conn| crate::db::services::find(conn, id)).await?;
                ("service", service.ok_or(CoreError::NotFound)?.shortname)
            }
            SwitchTarget::KeyType(t) => {
                let t = self.registry.get(t).ok_or_else(|| CoreError::Invalid("There is no such key type.".into()))?;
                if t.id == WEB_SESSION {
                    return Err(CoreError::Invalid("Web sessions cannot be disabled: nobody could sign in.".into()));
                }
                ("key_type", t.id.clone())
            }
        };
        let entry = NewAuditEntry {
            at: now(),
            action: format!("{noun}_{}", if enable { "enabled" } else { "disabled" }),
            actor_id: Some(by),
            key_type: Some(name),
            ip: Some(client.ip_string()),
            ..Default::default()
        };
        Ok(self
            .db
            .write(move |write| {
                match &target {
                    SwitchTarget::Service(id) => {
                        crate::db::services::set_enabled(write, *id, enable)?;
                    }
                    SwitchTarget::KeyType(t) => crate::db::key_types::set_enabled(write, t, enable)?,
                }
                crate::db::audit::append(write, &entry)
            })
            .await?)
    }
}
