//! /lib/ajax/service-nologin.php: the functions the app calls before it has a token.

use super::error::MoodleError;
use super::params::Params;
use super::server::read_body;
use crate::app::State;
use crate::web::client::ClientInfo;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

#[derive(serde::Deserialize)]
struct Request {
    #[serde(default)]
    index: Value,
    methodname: String,
    #[serde(default)]
    args: Value,
}

pub async fn service_nologin(state: State, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let client = ClientInfo::of(&req);
    let Some(body) = read_body(payload).await else {
        return answer(vec![failure(&MoodleError::request_too_large())]);
    };
    let requests: Vec<Request> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return answer(vec![failure(&MoodleError::invalid_parameter("Invalid JSON request."))]),
    };
    let mut results = Vec::new();
    for request in requests.into_iter().take(20) {
        let _ = request.index;
        let result = match request.methodname.as_str() {
            "tool_mobile_get_public_config" => Ok(super::functions::public_config(&state)),
            "tool_mobile_get_tokens_for_qr_login" => match Params::from_json(&request.args) {
                Ok(params) => super::qrlogin::tokens_for_qr_login(&state, &params, &client).await,
                Err(e) => Err(e),
            },
            other => Err(MoodleError::access(format!("{other} is not available without signing in."))),
        };
        results.push(match result {
            Ok(data) => json!({"error": false, "data": data}),
            Err(e) => failure(&e),
        });
    }
    answer(results)
}

fn failure(e: &MoodleError) -> Value {
    json!({"error": true, "exception": {"message": e.message, "errorcode": e.errorcode, "link": "", "moreinfourl": ""}})
}

fn answer(results: Vec<Value>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").json(results)
}
