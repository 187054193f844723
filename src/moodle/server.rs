//! /webservice/rest/server.php: Moodle's REST server.

use super::auth::authenticate;
use super::call::{self, Call, Reply};
use super::error::MoodleError;
use super::functions;
use super::output::{self, Format};
use super::params::{read_params, Params};
use super::State;
use crate::core::Client;
use crate::http::client_of;
use actix_web::{web, HttpRequest, HttpResponse};

pub async fn rest(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let client = client_of(&req);
    let params = read_params(&req, payload).await;
    let format = match &params {
        Ok(p) => Format::from_param(p.text("moodlewsrestformat").ok().flatten()),
        Err(_) => {
            let query = Params::parse(req.query_string().as_bytes(), b"").unwrap_or_default();
            Format::from_param(query.text("moodlewsrestformat").ok().flatten())
        }
    };
    let result = match params {
        Ok(params) => call(&state, params, &client).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(reply) => output::success(format, reply),
        Err(e) => output::error(format, &e, state.core.config().debug),
    }
}

async fn call(state: &State, mut params: Params, client: &Client) -> Result<Reply, MoodleError> {
    let wstoken = params.take_text("wstoken")?;
    let function = params.take_text("wsfunction")?;
    params.remove("moodlewsrestformat");
    params.remove_prefixed("moodlewssetting");

    let wstoken = wstoken.unwrap_or_default();
    let token = authenticate(state, &wstoken, client).await?;
    let function =
        function.filter(|f| !f.is_empty()).ok_or_else(|| MoodleError::invalid_parameter("Missing function name"))?;
    // A function this server does not have is answered as one the service does not offer.
    let function = functions::find(&function)
        .filter(|f| token.service().allows(f.name))
        .ok_or_else(|| MoodleError::function_not_allowed(&function))?;
    let key_id = token.key_id;
    let call = Call { state, token: &token, params, client, wstoken: &wstoken, functions: functions::FUNCTIONS };
    let result = call::dispatch(function, call).await?;
    // A batch counts each of its calls itself.
    if function.name != super::batch::NAME {
        state.core.record_use(key_id, client);
    }
    Ok(result)
}
