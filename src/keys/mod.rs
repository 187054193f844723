//! Key types and their registry, each type's policy, and the operations every key shares
//! (issue, revoke). A component that issues keys registers its type here; the pages read the
//! registry, so a new type needs no page change.

pub mod device_tokens;
pub mod ops;
pub mod policy;
mod registry;
pub mod types;

pub use policy::{KeyPolicy, Lifetime, SecretKind, SelfService};
pub use registry::{KeyType, KeyTypeRegistry};

// The core types' ids, by the names the code has always used.
pub use types::autologin::ID as AUTOLOGIN;
pub use types::calendar_export::ID as CALENDAR_EXPORT;
pub use types::password_reset::ID as PASSWORD_RESET;
pub use types::push_device::ID as PUSH_DEVICE;
pub use types::qr_login::ID as QR_LOGIN;
pub use types::rss::ID as RSS;
pub use types::web_session::ID as WEB_SESSION;
pub use types::webservice_token::ID as WEBSERVICE_TOKEN;
