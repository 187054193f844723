//! Who is asking: the address and user agent every use, issue and revocation is recorded with.

use crate::keys::ops::Actor;
use std::net::IpAddr;

#[derive(Clone, Debug)]
pub struct Client {
    pub ip: IpAddr,
    pub user_agent: String,
}

impl Client {
    pub fn ip_string(&self) -> String {
        self.ip.to_string()
    }

    /// This client acting as `user_id` (or as nobody yet), for the audit trail.
    pub fn actor(&self, user_id: Option<i64>) -> Actor {
        Actor { user_id, ip: Some(self.ip_string()) }
    }
}
