//! The core key types, one file each, registered at start like any plugin's. A new built-in
//! type is a file here and a line in `core_types`.

pub mod autologin;
pub mod calendar_export;
pub mod password_reset;
pub mod push_device;
pub mod qr_login;
pub mod rss;
pub mod web_session;
pub mod webservice_token;

use super::KeyType;

/// Every core type, in the order the pages list them.
pub fn core_types() -> Vec<KeyType> {
    vec![
        web_session::key_type(),
        webservice_token::key_type(),
        push_device::key_type(),
        rss::key_type(),
        calendar_export::key_type(),
        autologin::key_type(),
        qr_login::key_type(),
        password_reset::key_type(),
    ]
}
