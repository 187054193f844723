//! Moodle's AJAX services as the app uses them before it has a token: lib/ajax/service.php and
//! service-nologin.php, a JSON list of calls in the body (or, for a cacheable GET, in `args`),
//! answered with a list of results. Only functions that need no token are served here.

use super::call::{Handler, OpenCall};
use super::error::MoodleError;
use super::functions;
use super::output::{self, Shape};
use super::params::read_body;
use super::params::Params;
use super::State;
use crate::core::Client;
use crate::http::client_of;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

/// Calls in one request, at most.
const MAX_CALLS: usize = 20;

#[derive(serde::Deserialize)]
struct Request {
    methodname: String,
    #[serde(default)]
    args: Value,
}

pub async fn service(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let client = client_of(&req);
    let json = match read_body(payload).await {
        Some(body) if !body.is_empty() => body,
        // A GET (or an empty POST) carries the calls in `args`, as the app's cacheable requests do.
        Some(_) => match Params::parse(req.query_string().as_bytes(), b"") {
            Ok(query) => query.text("args").ok().flatten().unwrap_or("").as_bytes().to_vec(),
            Err(e) => return answer(vec![failure(&e)]),
        },
        None => return answer(vec![failure(&MoodleError::request_too_large())]),
    };
    let requests: Vec<Request> = match serde_json::from_slice(&json) {
        Ok(r) => r,
        // Moodle's "Invalid json in request" is a coding_exception; the app retries as a GET on it.
        Err(_) => return answer(vec![failure(&MoodleError::coding_error("Invalid json in request"))]),
    };
    let mut results = Vec::new();
    for request in requests.into_iter().take(MAX_CALLS) {
        let result = call(&state, request, &client).await;
        let failed = result.is_err();
        results.push(match result {
            Ok(data) => json!({"error": false, "data": data}),
            Err(e) => failure(&e),
        });
        // As Moodle: the calls after a failed one are not made.
        if failed {
            break;
        }
    }
    answer(results)
}

async fn call(state: &State, request: Request, client: &Client) -> Result<Value, MoodleError> {
    let function = functions::find(&request.methodname).ok_or_else(MoodleError::service_not_available)?;
    let Handler::Open(handler) = &function.handler else {
        return Err(MoodleError::service_requires_login(function.name));
    };
    let args = if request.args.is_null() { json!({}) } else { request.args };
    let params = Params::from_json(&args)?;
    handler(OpenCall { state, params, client }).await
}

fn failure(e: &MoodleError) -> Value {
    json!({"error": true, "exception": output::exception(e, Shape::Ajax, false)})
}

fn answer(results: Vec<Value>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").json(results)
}
