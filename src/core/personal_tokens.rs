//! Personal access tokens: a person with the capability (or everyone, if the site says so)
//! makes a web-service token for their own scripts — a name, one enabled service, optionally a
//! subset of its functions, a required expiry no further than the site allows, an optional IP
//! restriction. It is an ordinary web-service token whose row carries its own scope
//! (`function_scope`), which the one validity check narrows the service to; so a call outside
//! the scope is refused exactly as a function outside the service is. Its secret is shown once.

use super::own_keys::{CreatedKey, MAX_KEY_NAME_CHARS};
use super::{Client, Core, CoreError, CoreResult};
use crate::domain::capability::Capability;
use crate::domain::ip_restriction::IpRestriction;
use crate::domain::time::now;
use crate::keys::ops::{self, KeyRequest};
use crate::keys::WEBSERVICE_TOKEN;
use chrono::NaiveDateTime;
use std::collections::HashSet;

/// A service a person may make a personal access token for, with its functions.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceChoice {
    pub id: i64,
    pub name: String,
    pub shortname: String,
    pub functions: Vec<String>,
}

/// A personal access token asked for, as its form gives it.
#[derive(Clone, Debug)]
pub struct PersonalToken {
    pub name: String,
    pub service_id: Option<i64>,
    /// The functions chosen; empty means every function the service has now.
    pub functions: Vec<String>,
    pub valid_until: Option<NaiveDateTime>,
    pub ip_restriction: Option<IpRestriction>,
}

/// What a personal access token's entry is called.
pub const PERSONAL_TOKEN_LABEL: &str = "Personal access token";

impl Core {
    /// Whether someone with these capabilities may create personal access tokens.
    pub(super) fn may_create_personal_tokens_with(&self, capabilities: &HashSet<Capability>) -> bool {
        self.config.personal_tokens_for_everyone || capabilities.contains(&Capability::CreatePersonalToken)
    }

    /// The enabled services a person may make a personal access token for; refused to a
    /// person without the capability.
    pub async fn personal_token_choices(&self, user_id: i64) -> CoreResult<Vec<ServiceChoice>> {
        if !self.may_create_personal_tokens_with(&self.capabilities_of(user_id).await?) {
            return Err(CoreError::MissingCapability(Capability::CreatePersonalToken));
        }
        Ok(self
            .db
            .read(move |conn| {
                let mut choices = Vec::new();
                for s in crate::db::services::all(conn)?.into_iter().filter(|s| s.enabled) {
                    let functions = crate::db::services::functions(conn, s.id)?;
                    choices.push(ServiceChoice { id: s.id, name: s.name, shortname: s.shortname, functions });
                }
                Ok(choices)
            })
            .await?)
    }

    /// The longest a personal access token may be valid.
    pub fn personal_token_max_days(&self) -> i64 {
        self.config.personal_token_max_days.max(1)
    }

    /// Creates a person's own personal access token, audited with its scope; the token is in
    /// the answer only.
    pub async fn create_personal_token(
        &self,
        user_id: i64,
        request: PersonalToken,
        client: &Client,
    ) -> CoreResult<CreatedKey> {
        let choices = self.personal_token_choices(user_id).await?;
        let invalid = |field: &'static str, message: String| CoreError::InvalidField { field, message };
        let name: String = request.name.trim().chars().filter(|c| !c.is_control()).collect();
        if name.is_empty() {
            return Err(invalid("name", "Give the token a name, so you know it in your list.".into()));
        }
        if name.chars().count() > MAX_KEY_NAME_CHARS {
            return Err(invalid("name", format!("A token's name has at most {MAX_KEY_NAME_CHARS} characters.")));
        }
        let service = request
            .service_id
            .and_then(|id| choices.iter().find(|s| s.id == id))
            .ok_or_else(|| invalid("service", "Choose one of the services listed.".into()))?;
        let functions: Vec<String> = if request.functions.is_empty() {
            service.functions.clone()
        } else {
            if let Some(unknown) = request.functions.iter().find(|f| !service.functions.contains(f)) {
                return Err(invalid(
                    "functions",
                    format!("{} is not a function of {}.", unknown.chars().take(100).collect::<String>(), service.name),
                ));
            }
            // In the service's order, each once.
            service.functions.iter().filter(|f| request.functions.contains(f)).cloned().collect()
        };
        if functions.is_empty() {
            return Err(invalid("functions", format!("{} offers no functions.", service.name)));
        }
        let (now, max_days) = (now(), self.personal_token_max_days());
        let latest = (now + chrono::Duration::days(max_days)).date();
        let valid_until = match request.valid_until {
            None => {
                return Err(invalid(
                    "expires",
                    format!("Choose when the token expires: at most {max_days} days from today."),
                ))
            }
            Some(v) if v <= now => return Err(invalid("expires", "The expiry date must be in the future.".into())),
            Some(v) if v.date() > latest => {
                return Err(invalid(
                    "expires",
                    format!(
                        "A personal access token may be valid for at most {max_days} days: choose {latest} or earlier."
                    ),
                ))
            }
            Some(v) => v,
        };
        let enabled = self.registry.on_by_default(WEBSERVICE_TOKEN);
        let type_on = self.db.read(move |conn| crate::db::key_types::enabled(conn, WEBSERVICE_TOKEN, enabled)).await?;
        if !type_on {
            return Err(CoreError::TokensDisabled(service.shortname.clone()));
        }
        let audit_note = format!(
            "personal access token for {} ({}): {}",
            service.name,
            service.shortname,
            if functions.len() == service.functions.len() {
                format!("all {} functions", functions.len())
            } else {
                functions.join(", ")
            }
        );
        let key_request = KeyRequest {
            user_id,
            key_type: WEBSERVICE_TOKEN.into(),
            name: name.clone(),
            service_id: Some(service.id),
            ip_restriction: request.ip_restriction,
            valid_until: Some(valid_until),
            function_scope: Some(functions),
            audit_note: Some(audit_note),
            ..Default::default()
        };
        let (registry, actor) = (self.registry.clone(), client.actor(Some(user_id)));
        let issued = self.db.write(move |write| ops::issue(write, &registry, key_request, &actor, now)).await?;
        let secret = issued.secret.ok_or_else(|| CoreError::Invalid("The token could not be made.".into()))?;
        Ok(CreatedKey {
            id: issued.id,
            name,
            type_label: PERSONAL_TOKEN_LABEL.into(),
            shown_as: "Token",
            value: secret.expose().to_owned(),
            qr_code: false,
            valid_until: Some(valid_until),
        })
    }
}
