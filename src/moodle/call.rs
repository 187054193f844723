//! What a web-service function is and what it is called with: the types the function table,
//! the functions themselves and the servers that dispatch to them share.

use super::auth::AuthenticatedToken;
use super::error::MoodleError;
use super::params::Params;
use super::State;
use crate::core::Client;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;

/// A call made with a valid token.
pub struct Call<'a> {
    pub state: &'a State,
    pub token: &'a AuthenticatedToken,
    pub params: Params,
    pub client: &'a Client,
    /// The token as the client sent it (some answers are derived from it).
    pub wstoken: &'a str,
    /// The functions served, for calls that make calls (tool_mobile_call_external_functions).
    pub functions: &'static [WsFunction],
}

/// A call made without a token, through the no-login AJAX service (or with one, via REST).
pub struct OpenCall<'a> {
    pub state: &'a State,
    pub params: Params,
    pub client: &'a Client,
}

/// A function's result: a JSON value, or JSON already written (for the hottest function).
pub enum Reply {
    Value(Value),
    Json(String),
}

impl Reply {
    pub fn into_json(self) -> String {
        match self {
            Reply::Value(v) => v.to_string(),
            Reply::Json(j) => j,
        }
    }
}

pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, MoodleError>> + 'a>>;

pub enum Handler {
    /// Needs no token: also callable before sign-in through lib/ajax/service-nologin.php.
    Open(for<'a> fn(OpenCall<'a>) -> Answer<'a, Value>),
    WithToken(for<'a> fn(Call<'a>) -> Answer<'a, Reply>),
}

pub struct WsFunction {
    pub name: &'static str,
    pub handler: Handler,
}

impl WsFunction {
    /// Whether a caller needs a token (Moodle's `loginrequired`).
    pub fn login_required(&self) -> bool {
        matches!(self.handler, Handler::WithToken(_))
    }
}

/// The function of this name in `functions`.
pub fn find_in(functions: &'static [WsFunction], name: &str) -> Option<&'static WsFunction> {
    functions.iter().find(|f| f.name == name)
}

/// Calls a function the token's service allows (the caller has checked that).
pub async fn dispatch(function: &WsFunction, call: Call<'_>) -> Result<Reply, MoodleError> {
    match &function.handler {
        Handler::WithToken(handler) => handler(call).await,
        Handler::Open(handler) => {
            handler(OpenCall { state: call.state, params: call.params, client: call.client }).await.map(Reply::Value)
        }
    }
}
