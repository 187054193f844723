//! The web-service functions served: one table, from which the mobile service's function list,
//! the REST dispatcher and the AJAX services all read. A function is one entry here.

use super::call::{Answer, Handler, Reply, WsFunction};
use super::error::MoodleError;
use super::{batch, devices, mobile, my_keys, qrlogin, site_info, userkeys_admin};
use serde_json::Value;
use std::future::Future;

/// Every function this server implements: the administrators' `tool_userkeys_*` in their own
/// service, every other in the mobile app's.
pub const FUNCTIONS: &[WsFunction] = &[
    WsFunction {
        name: "core_webservice_get_site_info",
        handler: Handler::WithToken(|call| {
            Box::pin(async move { Ok(Reply::Json(site_info::render(call.state, call.token, call.wstoken))) })
        }),
    },
    WsFunction {
        name: "tool_mobile_get_public_config",
        handler: Handler::Open(|call| Box::pin(async move { Ok(mobile::public_config(call.state.core.config())) })),
    },
    WsFunction { name: "tool_mobile_get_config", handler: Handler::WithToken(|call| value(mobile::config(call))) },
    WsFunction {
        name: "tool_mobile_get_autologin_key",
        handler: Handler::WithToken(|call| value(mobile::autologin_key(call))),
    },
    WsFunction {
        name: "tool_mobile_get_tokens_for_qr_login",
        handler: Handler::Open(|call| Box::pin(qrlogin::tokens_for_qr_login(call))),
    },
    WsFunction {
        name: "tool_mobile_call_external_functions",
        handler: Handler::WithToken(|call| value(batch::call_external_functions(call))),
    },
    WsFunction {
        name: "core_user_add_user_device",
        handler: Handler::WithToken(|call| value(devices::add_user_device(call))),
    },
    WsFunction {
        name: "core_user_update_user_device_public_key",
        handler: Handler::WithToken(|call| value(devices::update_public_key(call))),
    },
    WsFunction {
        name: "core_user_remove_user_device",
        handler: Handler::WithToken(|call| value(devices::remove_user_device(call))),
    },
    WsFunction { name: "local_userkeys_get_my_keys", handler: Handler::WithToken(|call| value(my_keys::list(call))) },
    WsFunction {
        name: "local_userkeys_revoke_my_key",
        handler: Handler::WithToken(|call| value(my_keys::revoke(call))),
    },
    WsFunction {
        name: userkeys_admin::FORCE_LOGOUT,
        handler: Handler::WithToken(|call| value(userkeys_admin::force_logout(call))),
    },
    WsFunction {
        name: userkeys_admin::GET_USER_KEYS,
        handler: Handler::WithToken(|call| value(userkeys_admin::get_user_keys(call))),
    },
    WsFunction {
        name: userkeys_admin::REVOKE_KEYS,
        handler: Handler::WithToken(|call| value(userkeys_admin::revoke_keys(call))),
    },
];

/// The administrators' functions, in their own service (`tool_userkeys_admin`).
fn is_admin_function(name: &str) -> bool {
    name.starts_with("tool_userkeys_")
}

fn value<'a>(answer: impl Future<Output = Result<Value, MoodleError>> + 'a) -> Answer<'a, Reply> {
    Box::pin(async move { answer.await.map(Reply::Value) })
}

/// The names of the functions of the `moodle_mobile_app` service on a new site.
pub fn mobile_app_functions() -> Vec<&'static str> {
    FUNCTIONS.iter().map(|f| f.name).filter(|n| !is_admin_function(n)).collect()
}

/// The names of the functions of the `tool_userkeys_admin` service.
pub fn admin_service_functions() -> Vec<&'static str> {
    FUNCTIONS.iter().map(|f| f.name).filter(|n| is_admin_function(n)).collect()
}

pub fn find(name: &str) -> Option<&'static WsFunction> {
    super::call::find_in(FUNCTIONS, name)
}
