//! A web-service call's token, validated by the core's one check and refused in Moodle's words.

use super::error::MoodleError;
use super::State;
use crate::core::{Client, Expected, KeyOwner, ServiceAccess, ValidKey};
use crate::keys::WEBSERVICE_TOKEN;
use std::sync::Arc;

/// A valid web-service token, its owner and its service.
#[derive(Clone, Debug)]
pub struct AuthenticatedToken {
    pub key_id: i64,
    pub key: Arc<ValidKey>,
    pub user: Arc<KeyOwner>,
    pub service: Arc<ServiceAccess>,
}

pub async fn authenticate(state: &State, wstoken: &str, client: &Client) -> Result<AuthenticatedToken, MoodleError> {
    let expected = Expected { key_type: WEBSERVICE_TOKEN, owner: None };
    let key = state.core.validate(wstoken, expected, client).await.map_err(MoodleError::for_token)?;
    // The token type's policy says a token always has its service; one without opens nothing.
    let service = key.service.clone().ok_or_else(MoodleError::invalid_token)?;
    Ok(AuthenticatedToken { key_id: key.key_id, user: key.user.clone(), service, key })
}
