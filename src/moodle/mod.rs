//! Moodle's protocol: login/token.php, the REST web-service server and its functions.

pub mod functions;

pub fn routes(_cfg: &mut actix_web::web::ServiceConfig) {}
