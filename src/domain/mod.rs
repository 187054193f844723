//! The domain: no HTTP, no SQL. Secrets, IP restrictions, passwords, time, user-agent naming.

pub mod capability;
pub mod device_models;
pub mod ip_restriction;
pub mod local_url;
pub mod new_client;
pub mod password;
pub mod secret;
pub mod throttle;
pub mod time;
pub mod user_agent;
