//! What a person does with their own keys, on their page or from the app: revoke one (with
//! the phone's push registration, when it is a phone's token), revoke a type, sign out
//! everywhere else, create a key for a feed reader, a calendar or the app's QR sign-in.

use super::{Client, Core, CoreError, CoreResult};
use crate::db::keys::Selection;
use crate::db::models::KeyRow;
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::time::now;
use crate::keys::device_tokens::app_device_uuid;
use crate::keys::ops::{self, KeyRequest, Revocation, Scope};
use crate::keys::PUSH_DEVICE;
use chrono::NaiveDateTime;

/// A revocation a person asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnRevocation {
    One(i64),
    OfType(String),
    /// Everything but the session asking.
    EverythingElse,
}

/// A revocation checked against the person's keys, described for its confirmation.
#[derive(Clone, Debug)]
pub enum CheckedRevocation {
    One {
        key_id: i64,
        name: String,
        is_current: bool,
    },
    OfType {
        id: String,
        label: String,
    },
    /// What will stop: each other signed-in client, by name and kind.
    EverythingElse {
        stopping: Vec<(String, String)>,
    },
}

/// A key a person has just created: its secret appears only here, in `value`.
#[derive(Debug)]
pub struct CreatedKey {
    pub id: i64,
    pub name: String,
    pub type_label: String,
    pub shown_as: &'static str,
    pub value: String,
    pub qr_code: bool,
    pub valid_until: Option<NaiveDateTime>,
}

/// The longest name a person may give a key.
pub const MAX_KEY_NAME_CHARS: usize = 100;

impl Core {
    /// Checks that the person may make this revocation, without making it.
    pub async fn check_own_revocation(
        &self,
        user_id: i64,
        current_session: Option<i64>,
        request: &OwnRevocation,
    ) -> CoreResult<CheckedRevocation> {
        match request {
            OwnRevocation::One(id) => {
                let row = self.own_revocable_key(user_id, *id).await?;
                Ok(CheckedRevocation::One {
                    key_id: row.id,
                    is_current: current_session == Some(row.id),
                    name: row.name,
                })
            }
            OwnRevocation::OfType(id) => {
                let (id, label) = self.own_revocable_type(id)?;
                Ok(CheckedRevocation::OfType { id, label })
            }
            OwnRevocation::EverythingElse => {
                let now = now();
                let rows = self.db.read(move |conn| crate::db::keys::active_for_user(conn, user_id, now)).await?;
                let sign_in = self.registry.sign_in_types();
                let stopping = rows
                    .into_iter()
                    .filter(|k| sign_in.contains(&k.key_type) && Some(k.id) != current_session)
                    .filter_map(|k| {
                        let key_type = self.registry.get(&k.key_type).filter(|t| t.visible)?;
                        Some((k.name, key_type.label.clone()))
                    })
                    .collect();
                Ok(CheckedRevocation::EverythingElse { stopping })
            }
        }
    }

    /// Gives one of the person's own active keys a name they will recognise ("Alice's Pixel"),
    /// with an audit entry. Returns the name as stored.
    pub async fn rename_own(&self, user_id: i64, key_id: i64, name: &str, client: &Client) -> CoreResult<String> {
        let name: String = name.trim().chars().filter(|c| !c.is_control()).collect();
        if name.is_empty() {
            return Err(CoreError::Invalid("Type a name for the key.".into()));
        }
        if name.chars().count() > MAX_KEY_NAME_CHARS {
            return Err(CoreError::Invalid(format!("A key's name has at most {MAX_KEY_NAME_CHARS} characters.")));
        }
        let row = self.db.read(move |conn| crate::db::keys::find(conn, key_id)).await?;
        let row = row
            .filter(|k| {
                k.user_id == user_id
                    && k.revoked_at.is_none()
                    && self.registry.get(&k.key_type).is_some_and(|t| t.visible)
            })
            .ok_or(CoreError::NotFound)?;
        let entry = crate::db::models::NewAuditEntry {
            at: now(),
            action: "key_renamed".into(),
            actor_id: Some(user_id),
            target_user_id: Some(user_id),
            key_id: Some(row.id),
            key_type: Some(row.key_type.clone()),
            ip: Some(client.ip_string()),
            reason: Some(format!("“{}” → “{name}”", row.name)),
        };
        let stored = name.clone();
        self.db
            .write(move |write| {
                let details = super::devices::mark_named_by_owner(row.details.as_deref());
                crate::db::keys::rename(write, row.id, &stored, details.as_deref())?;
                crate::db::audit::append(write, &entry)
            })
            .await?;
        Ok(name)
    }

    /// One of the person's own keys that they may revoke here. Someone else's key, or one
    /// already gone, is "not found": its existence is not told.
    async fn own_revocable_key(&self, user_id: i64, id: i64) -> CoreResult<KeyRow> {
        let row = self.db.read(move |conn| crate::db::keys::find(conn, id)).await?;
        let key_type = row.as_ref().and_then(|k| self.registry.get(&k.key_type));
        let row =
            row.filter(|k| k.user_id == user_id && key_type.is_some_and(|t| t.visible)).ok_or(CoreError::NotFound)?;
        // Their own key, revoked already (in another tab, say): told so, by name.
        if row.revoked_at.is_some() {
            return Err(CoreError::Invalid(format!("“{}” was already revoked.", row.name)));
        }
        if key_type.is_some_and(|t| !t.revocable) {
            return Err(CoreError::NotAllowed("This kind of key cannot be revoked here.".into()));
        }
        Ok(row)
    }

    /// A type whose keys a person may revoke all at once: its id and label.
    fn own_revocable_type(&self, id: &str) -> CoreResult<(String, String)> {
        let t = self
            .registry
            .get(id)
            .filter(|t| t.visible)
            .ok_or_else(|| CoreError::Invalid("There is no such kind of key.".into()))?;
        if !t.revocable {
            return Err(CoreError::NotAllowed(format!("{} cannot be revoked here.", t.label)));
        }
        Ok((t.id.clone(), t.label.clone()))
    }

    /// Makes a person's revocation; how many keys it revoked.
    pub async fn revoke_own(
        &self,
        user_id: i64,
        current_session: Option<i64>,
        request: &OwnRevocation,
        from_app: bool,
        client: &Client,
    ) -> CoreResult<usize> {
        let reason = if from_app { "revoked by its owner from the app" } else { "revoked by its owner" };
        // For one key: the phone it is on, whose push registration goes with it (one entry per device).
        let (selection, reason, one, device) = match request {
            OwnRevocation::One(id) => {
                let row = self.own_revocable_key(user_id, *id).await?;
                let device = row.device_id.as_deref().and_then(app_device_uuid).map(str::to_owned);
                (Selection::One(row.id), reason, true, device)
            }
            OwnRevocation::OfType(id) => (Selection::OfType(self.own_revocable_type(id)?.0), reason, false, None),
            // Every other signed-in client (hidden types too); feed keys are revoked on their own.
            OwnRevocation::EverythingElse => (
                Selection::OfTypesExcept(self.registry.sign_in_types(), current_session),
                "owner signed out everywhere else",
                false,
                None,
            ),
        };
        let revocation = Revocation {
            user_id,
            selection,
            scope: Scope::RevocableOnly,
            actor: client.actor(Some(user_id)),
            reason: reason.into(),
        };
        let registry = self.registry.clone();
        let count = self
            .db
            .write(move |write| {
                let mut count = ops::revoke(write, &registry, &revocation, now())?;
                if let (Some(uuid), true) = (device, count > 0) {
                    let push = Revocation {
                        selection: Selection::Device {
                            device_id: uuid,
                            key_type: PUSH_DEVICE.into(),
                            service_id: None,
                        },
                        ..revocation.clone()
                    };
                    count += ops::revoke(write, &registry, &push, now())?;
                }
                Ok(count)
            })
            .await?;
        if one && count == 0 {
            return Err(CoreError::NotFound);
        }
        Ok(count)
    }

    /// Creates a key of a type people create for themselves; the secret is in the answer only.
    pub async fn create_own_key(
        &self,
        user_id: i64,
        key_type: &str,
        name: Option<&str>,
        client: &Client,
    ) -> CoreResult<CreatedKey> {
        let t = self
            .registry
            .get(key_type)
            .filter(|t| t.self_service.is_some())
            .ok_or_else(|| CoreError::Invalid("That kind of key cannot be created here.".into()))?;
        let Some(self_service) = t.self_service.clone() else { return Err(CoreError::NotFound) };
        let now = now();
        let valid_until = t.policy.lifetime.valid_until(now, self.lifetimes());
        let request = KeyRequest {
            user_id,
            key_type: t.id.clone(),
            name: name
                .map(|n| n.trim().chars().take(100).collect::<String>())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| self_service.key_name.to_owned()),
            valid_until,
            ip_restriction: if t.policy.bound_to_address {
                IpRestriction::parse(&client.ip_string()).ok().flatten()
            } else {
                None
            },
            ..Default::default()
        };
        let (registry, actor) = (self.registry.clone(), client.actor(Some(user_id)));
        let name = request.name.clone();
        let issued = self.db.write(move |write| ops::issue(write, &registry, request, &actor, now)).await?;
        let secret =
            issued.secret.ok_or_else(|| CoreError::Invalid("This kind of key has no secret to show.".into()))?;
        Ok(CreatedKey {
            id: issued.id,
            name,
            type_label: t.label.clone(),
            shown_as: self_service.shown_as,
            value: self_service.address.fill(&self.config.site_root(), user_id, secret.expose()),
            qr_code: self_service.qr_code,
            valid_until,
        })
    }
}
