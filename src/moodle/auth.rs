//! A web-service call's token, validated by the core's one check and refused in Moodle's words.

use super::error::MoodleError;
use super::State;
use crate::core::{Client, Expected, KeyOwner, ServiceAccess, ValidKey};
use crate::keys::WEBSERVICE_TOKEN;
use std::sync::Arc;

/// A valid web-service token, its owner and its service. Borrowed from the key rather than
/// shared again: a service's count of holders is written by every call on every core.
#[derive(Clone, Debug)]
pub struct AuthenticatedToken {
    pub key_id: i64,
    /// Private, so that only `authenticate` makes one: it checked that the key has a service.
    key: Arc<ValidKey>,
}

impl AuthenticatedToken {
    pub fn key(&self) -> &Arc<ValidKey> {
        &self.key
    }

    pub fn user(&self) -> &KeyOwner {
        &self.key.user
    }

    pub fn service(&self) -> &ServiceAccess {
        self.key.service.as_deref().expect("checked when the token was authenticated")
    }
}

pub async fn authenticate(state: &State, wstoken: &str, client: &Client) -> Result<AuthenticatedToken, MoodleError> {
    let expected = Expected { key_type: WEBSERVICE_TOKEN, owner: None };
    let key = state.core.validate(wstoken, expected, client).await.map_err(MoodleError::for_token)?;
    // The token type's policy says a token always has its service; one without opens nothing.
    if key.service.is_none() {
        return Err(MoodleError::invalid_token());
    }
    Ok(AuthenticatedToken { key_id: key.key_id, key })
}
