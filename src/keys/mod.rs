//! Key types and their registry, and the operations every key shares (issue, revoke).
//! A component that issues keys registers its type here; the pages read the registry,
//! so a new type needs no page change.

mod builtin;
pub mod device_tokens;
pub mod ops;
mod registry;

pub use builtin::*;
pub use registry::{KeyType, KeyTypeRegistry};
