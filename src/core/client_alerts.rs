//! New-client alerts as their owner meets them: on their page until they say "It was me" or
//! revoke the key, and by mail, sent by the background upkeep (never on a request's path), at
//! most one mail per key an hour; a mail that fails is tried again at the next run.

use super::{Client, Core, CoreError, CoreResult};
use crate::db::client_alerts::AlertOnKey;
use crate::db::models::NewAuditEntry;
use crate::domain::time::now;
use crate::mail::Mail;
use chrono::{Duration, NaiveDateTime};

/// A key's owner gets at most one mail about its new clients this often.
pub const MAIL_EVERY_MINUTES: i64 = 60;

/// Keys whose alerts one run of the upkeep mails at most.
const KEYS_PER_RUN: i64 = 200;

/// Alerts a page shows at most.
const ALERTS_SHOWN: i64 = 20;

/// A key used by a client, or from a network, new to it.
#[derive(Clone, Debug)]
pub struct ClientAlert {
    pub id: i64,
    pub key_id: i64,
    pub key_name: String,
    /// The key's kind in a sentence: "calendar export key".
    pub key_kind: String,
    /// The client, named ("Nextcloud desktop 3.3 · Windows 10").
    pub agent: String,
    pub ip: String,
    /// New as a client; otherwise only its network was.
    pub new_client: bool,
    pub first_seen: NaiveDateTime,
}

impl Core {
    fn client_alert(&self, a: AlertOnKey) -> ClientAlert {
        let label = self.registry.get(&a.key_type).map_or(a.key_type.clone(), |t| t.label.clone());
        ClientAlert {
            id: a.alert.id,
            key_id: a.alert.key_id,
            key_name: a.key_name,
            key_kind: kind_in_sentence(&label),
            agent: a.alert.agent,
            ip: a.alert.ip,
            new_client: a.alert.new_client,
            first_seen: a.alert.first_seen,
        }
    }

    /// A person's alerts still to be looked at, on keys not revoked, newest first.
    pub async fn open_client_alerts(&self, user_id: i64) -> CoreResult<Vec<ClientAlert>> {
        let rows =
            self.db.read(move |conn| crate::db::client_alerts::open_for_user(conn, user_id, ALERTS_SHOWN)).await?;
        Ok(rows.into_iter().map(|a| self.client_alert(a)).collect())
    }

    /// One of a person's alerts still open (to revoke its key through the usual confirmation).
    pub async fn open_client_alert(&self, user_id: i64, id: i64) -> CoreResult<ClientAlert> {
        let row = self.db.read(move |conn| crate::db::client_alerts::find_for_user(conn, user_id, id)).await?;
        let row = row.filter(|a| a.alert.dismissed_at.is_none()).ok_or(CoreError::NotFound)?;
        Ok(self.client_alert(row))
    }

    /// "It was me": the alert leaves the page (and, not yet mailed, the mail), with an audit entry.
    pub async fn dismiss_client_alert(&self, user_id: i64, id: i64, client: &Client) -> CoreResult<ClientAlert> {
        let alert = self.open_client_alert(user_id, id).await?;
        let entry = NewAuditEntry {
            at: now(),
            action: "client_alert_dismissed".into(),
            actor_id: Some(user_id),
            target_user_id: Some(user_id),
            key_id: Some(alert.key_id),
            key_type: None,
            ip: Some(client.ip_string()),
            reason: Some(format!("It was me: {} from {}", alert.agent, alert.ip)),
        };
        let dismissed = self
            .db
            .write(move |write| {
                let dismissed = crate::db::client_alerts::dismiss(write, user_id, id, entry.at)?;
                if dismissed {
                    crate::db::audit::append(write, &entry)?;
                }
                Ok(dismissed)
            })
            .await?;
        if !dismissed {
            return Err(CoreError::NotFound);
        }
        Ok(alert)
    }

    /// Mails the alerts due (one mail per key, none for a key mailed within the hour); returns
    /// how many mails went out. A mail that fails leaves its alerts to the next run.
    pub async fn mail_client_alerts(&self) -> CoreResult<usize> {
        if !self.mailer.configured() {
            return Ok(0);
        }
        let every = Duration::minutes(MAIL_EVERY_MINUTES);
        let at = now();
        let due =
            self.db.write(move |write| crate::db::client_alerts::claim_due(write, at, every, KEYS_PER_RUN)).await?;
        let mut sent = 0;
        for (alerts, fullname, email) in due {
            let ids: Vec<i64> = alerts.iter().map(|a| a.alert.id).collect();
            let alerts: Vec<ClientAlert> = alerts.into_iter().map(|a| self.client_alert(a)).collect();
            let outcome = if email.contains('@') {
                self.mailer.send(self.alert_mail(&alerts, fullname, email)).await.map_err(|e| e.to_string())
            } else {
                Ok(()) // Nowhere to mail it: the page shows it.
            };
            let ok = outcome.is_ok();
            if let Err(e) = outcome {
                tracing::warn!(error = %e, key = alerts[0].key_id, "a new-client alert could not be mailed; will retry");
            }
            let done = now();
            self.db
                .write(move |write| match ok {
                    true => crate::db::client_alerts::mark_mailed(write, &ids, done),
                    false => crate::db::client_alerts::release(write, &ids),
                })
                .await?;
            sent += usize::from(ok);
        }
        Ok(sent)
    }

    fn alert_mail(&self, alerts: &[ClientAlert], fullname: String, email: String) -> Mail {
        let first = &alerts[0];
        let site = &self.config.site_name;
        let link = format!("{}/user/managetoken.php#key-{}", self.config.site_root(), first.key_id);
        let lines: Vec<String> = alerts
            .iter()
            .map(|a| {
                format!(
                    "  - {}{}, from {}, at {}",
                    a.agent,
                    if a.new_client { "" } else { " (a client it knows, from a new network)" },
                    a.ip,
                    crate::domain::time::exact_in(a.first_seen, self.config.timezone)
                )
            })
            .collect();
        Mail {
            to_name: fullname,
            to_address: email,
            subject: format!("Your {} “{}” was used by a new client", first.key_kind, first.key_name),
            body: format!(
                "Your {} “{}” on {site} was used by a client or from a network it had not been used by before:\n\n{}\n\n\
                 If this was you, there is nothing to do; you can say so on your keys page.\n\
                 If it was not, revoke the key at once: whatever uses it will stop working.\n\n{link}\n",
                first.key_kind,
                first.key_name,
                lines.join("\n"),
            ),
        }
    }
}

/// "Calendar export keys" → "calendar export key"; "RSS feed keys" → "RSS feed key".
fn kind_in_sentence(label: &str) -> String {
    let one = label.strip_suffix('s').unwrap_or(label);
    let mut chars = one.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if !second.is_uppercase() => {
            first.to_lowercase().chain(one[first.len_utf8()..].chars()).collect()
        }
        _ => one.to_owned(),
    }
}
