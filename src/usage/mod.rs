//! Recording use of keys, batched: uses are aggregated in memory per (key, agent, IP), appended
//! to a pending log in the database four times a second (one packed row per flush), and folded
//! from there into the usage table in sorted batches — at once when the site is quiet, every
//! few seconds under load. Nothing is written per request.

mod flush;
mod fold;
mod last_used;
mod recorder;
mod summary;
mod writer;

pub use fold::Fold;
pub use recorder::UsageRecorder;
pub use summary::{summarise, AgentUse};
pub use writer::{UsageWriter, FLUSH_EVERY};
