pub const MOBILE_APP_FUNCTIONS: &[&str] = &[
    "core_webservice_get_site_info",
    "core_user_add_user_device",
    "core_user_remove_user_device",
    "tool_mobile_get_autologin_key",
    "tool_mobile_get_public_config",
    "tool_mobile_get_tokens_for_qr_login",
    "local_userkeys_get_my_keys",
    "local_userkeys_revoke_my_key",
];
