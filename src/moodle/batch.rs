//! tool_mobile_call_external_functions: the app sends its queued calls in one request. Each
//! inner call is authorised as if it came alone (its function must be in the token's service)
//! and counted as one use of the token; the first failure ends the batch, as in Moodle.

use super::call::{self, find_in, Call, Reply};
use super::error::MoodleError;
use super::output::{self, Shape};
use super::params::Params;
use serde_json::{json, Value};

pub const NAME: &str = "tool_mobile_call_external_functions";

/// Calls in one batch, at most (Moodle has no limit; a phone's queue is a handful).
const MAX_CALLS: usize = 50;

pub async fn call_external_functions(call: Call<'_>) -> Result<Value, MoodleError> {
    let requests = call.params.list("requests")?;
    if requests.len() > MAX_CALLS {
        return Err(MoodleError::invalid_parameter(format!("At most {MAX_CALLS} calls in one batch.")));
    }
    // Every request is checked for its shape before any runs.
    let mut parsed = Vec::with_capacity(requests.len());
    for request in &requests {
        let function = request.required_text("function")?.trim().to_owned();
        let arguments = request.text("arguments")?.unwrap_or("{}");
        let arguments: Value = serde_json::from_str(if arguments.trim().is_empty() { "{}" } else { arguments })
            .map_err(|_| MoodleError::invalid_parameter("Invalid arguments: JSON-encoded object expected"))?;
        let arguments = match arguments {
            Value::Array(items) if items.is_empty() => json!({}),
            other => other,
        };
        parsed.push((function, Params::from_json(&arguments)?));
    }

    let mut responses = Vec::with_capacity(parsed.len());
    for (function, params) in parsed {
        let result = run_one(&call, &function, params).await;
        call.state.core.record_use(call.token.key_id, call.client);
        match result {
            Ok(reply) => responses.push(json!({"error": false, "data": reply.into_json()})),
            Err(e) => {
                let exception = output::exception(&e, Shape::Batch, call.state.core.config().debug).to_string();
                responses.push(json!({"error": true, "exception": exception}));
                break;
            }
        }
    }
    Ok(json!({"responses": responses}))
}

async fn run_one(call: &Call<'_>, name: &str, params: Params) -> Result<Reply, MoodleError> {
    let function = find_in(call.functions, name)
        .filter(|f| f.name != NAME && call.token.service().allows(f.name))
        .ok_or_else(|| MoodleError::function_not_allowed(name))?;
    let inner = Call { params, ..*call };
    call::dispatch(function, inner).await
}
