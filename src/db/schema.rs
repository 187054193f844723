// Written by hand to match migrations/{sqlite,postgres}; both backends share it.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        fullname -> Text,
        email -> Text,
        password_hash -> Text,
        suspended -> Bool,
        is_site_admin -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    services (id) {
        id -> BigInt,
        shortname -> Text,
        name -> Text,
        enabled -> Bool,
        download_files -> Bool,
        upload_files -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    service_functions (service_id, function_name) {
        service_id -> BigInt,
        function_name -> Text,
    }
}

diesel::table! {
    key_type_settings (key_type) {
        key_type -> Text,
        enabled -> Bool,
    }
}

diesel::table! {
    user_keys (id) {
        id -> BigInt,
        user_id -> BigInt,
        key_type -> Text,
        name -> Text,
        secret_hash -> Nullable<Text>,
        private_hash -> Nullable<Text>,
        service_id -> Nullable<BigInt>,
        device_id -> Nullable<Text>,
        details -> Nullable<Text>,
        created_at -> Timestamp,
        created_by -> Nullable<BigInt>,
        ip_restriction -> Nullable<Text>,
        valid_until -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        revoked_by -> Nullable<BigInt>,
        revoked_reason -> Nullable<Text>,
        expiry_reported_at -> Nullable<Timestamp>,
        function_scope -> Nullable<Text>,
    }
}

diesel::table! {
    /// One row per key (made by a trigger when the key is inserted).
    key_last_use (key_id) {
        key_id -> BigInt,
        last_used_at -> Nullable<Timestamp>,
        last_used_ip -> Nullable<Text>,
        last_used_ip_hex -> Nullable<Text>,
    }
}

diesel::table! {
    key_usage (key_id, agent_id, ip) {
        key_id -> BigInt,
        agent_id -> BigInt,
        ip -> Text,
        first_seen -> Timestamp,
        last_seen -> Timestamp,
        hits -> BigInt,
    }
}

diesel::table! {
    /// Uses of a key per day (days since 1970-01-01, UTC).
    key_daily_uses (day, key_id) {
        key_id -> BigInt,
        day -> BigInt,
        hits -> BigInt,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> Timestamp,
        action -> Text,
        actor_id -> Nullable<BigInt>,
        target_user_id -> Nullable<BigInt>,
        key_id -> Nullable<BigInt>,
        key_type -> Nullable<Text>,
        ip -> Nullable<Text>,
        reason -> Nullable<Text>,
    }
}

diesel::table! {
    sign_in_failures (id) {
        id -> BigInt,
        login -> Text,
        ip -> Text,
        at -> Timestamp,
        checked -> Bool,
    }
}

diesel::table! {
    roles (id) {
        id -> BigInt,
        shortname -> Text,
        name -> Text,
    }
}

diesel::table! {
    role_capabilities (role_id, capability) {
        role_id -> BigInt,
        capability -> Text,
    }
}

diesel::table! {
    user_roles (user_id, role_id) {
        user_id -> BigInt,
        role_id -> BigInt,
    }
}

diesel::joinable!(user_keys -> users (user_id));
diesel::joinable!(role_capabilities -> roles (role_id));
diesel::joinable!(user_roles -> roles (role_id));
diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(user_keys -> services (service_id));
diesel::table! {
    user_agents (id) {
        id -> BigInt,
        agent -> Text,
    }
}

diesel::table! {
    key_usage_pending (id) {
        id -> BigInt,
        use_count -> BigInt,
        uses -> Binary,
    }
}

diesel::table! {
    key_usage_merged (id) {
        id -> BigInt,
        first_key -> BigInt,
        last_key -> BigInt,
        use_count -> BigInt,
    }
}

diesel::table! {
    /// A merged piece's packed uses, apart from the columns a sweep updates.
    key_usage_merged_uses (piece_id) {
        piece_id -> BigInt,
        uses -> Binary,
    }
}

diesel::table! {
    /// A key used by a client or from a network new to it (see migrations' client_alerts).
    client_alerts (id) {
        id -> BigInt,
        key_id -> BigInt,
        user_id -> BigInt,
        agent -> Text,
        ip -> Text,
        new_client -> Bool,
        first_seen -> Timestamp,
        created_at -> Timestamp,
        dismissed_at -> Nullable<Timestamp>,
        mailed_at -> Nullable<Timestamp>,
        mail_claimed_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(client_alerts -> user_keys (key_id));
diesel::joinable!(key_usage -> user_keys (key_id));
diesel::joinable!(key_last_use -> user_keys (key_id));
diesel::joinable!(key_usage -> user_agents (agent_id));
diesel::joinable!(service_functions -> services (service_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    services,
    service_functions,
    key_type_settings,
    user_keys,
    key_last_use,
    key_usage,
    key_usage_pending,
    key_usage_merged,
    key_usage_merged_uses,
    user_agents,
    audit_log,
    sign_in_failures,
    roles,
    role_capabilities,
    user_roles,
    client_alerts,
);
