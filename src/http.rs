//! What both transports take from an HTTP request the same way: who is calling (address and
//! user agent), and the core they call.

use crate::core::{Client, Core};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use std::future::{ready, Ready};
use std::net::{IpAddr, Ipv4Addr};

/// The core, as every handler receives it.
pub type CoreData = web::Data<Core>;

/// The caller of a request. Behind a proxy the site trusts, the address it forwards.
pub fn client_of(req: &HttpRequest) -> Client {
    let trust_proxy = req.app_data::<CoreData>().is_some_and(|core| core.config().trust_proxy);
    let forwarded = trust_proxy.then(|| req.connection_info().realip_remote_addr().and_then(parse_addr)).flatten();
    let ip = forwarded
        .or_else(|| req.peer_addr().map(|a| a.ip()))
        .map(crate::domain::ip_restriction::canonical)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    Client { ip, user_agent }
}

fn parse_addr(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

impl FromRequest for Client {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(client_of(req)))
    }
}
