//! Every answer of Moodle's protocol is written here: the REST server's in Moodle's two
//! formats (JSON and Moodle's own XML), and Moodle's errors in each endpoint's shape.

use super::error::MoodleError;
use actix_web::http::header::{self, HeaderValue};
use actix_web::HttpResponse;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// `moodlewsrestformat`: json, or xml (Moodle's default, also for any other value).
    pub fn from_param(value: Option<&str>) -> Self {
        if value == Some("json") {
            Format::Json
        } else {
            Format::Xml
        }
    }
}

fn response(format: Format, body: String) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    // Static values: every answer of the hot path carries them, so none is parsed per request.
    builder
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, must-revalidate, pre-check=0, post-check=0, max-age=0"),
        ))
        .insert_header((header::EXPIRES, HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .insert_header((header::ACCEPT_RANGES, HeaderValue::from_static("none")))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")));
    match format {
        Format::Json => {
            builder.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json"))).body(body)
        }
        Format::Xml => builder
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8")))
            .insert_header((header::CONTENT_DISPOSITION, HeaderValue::from_static("inline; filename=\"response.xml\"")))
            .body(body),
    }
}

pub fn success(format: Format, reply: super::call::Reply) -> HttpResponse {
    use super::call::Reply;
    let body = match (format, reply) {
        (Format::Json, Reply::Json(json)) => json,
        (Format::Json, Reply::Value(value)) => value.to_string(),
        (Format::Xml, reply) => {
            let value = match reply {
                Reply::Value(v) => v,
                Reply::Json(json) => serde_json::from_str(&json).unwrap_or(Value::Null),
            };
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n");
            if !value.is_null() {
                xmlize(&value, &mut out);
            }
            out.push_str("</RESPONSE>\n");
            out
        }
    };
    response(format, body)
}

/// Where an error is answered: each of Moodle's endpoints gives the exception its own shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The REST server's exception (JSON; XML is written by `error`).
    Rest,
    /// login/token.php's error object.
    TokenPhp,
    /// One failed call of the AJAX services.
    Ajax,
    /// One failed call inside tool_mobile_call_external_functions (sent as a JSON string).
    Batch,
}

/// The one place Moodle's errors are written: the exception's fields in the endpoint's shape;
/// `debuginfo` only in debug mode, as Moodle does.
pub fn exception(error: &MoodleError, shape: Shape, debug: bool) -> Value {
    let debuginfo = error.debuginfo.as_deref().filter(|_| debug);
    let mut object = match shape {
        Shape::Rest => serde_json::json!({
            "exception": error.exception, "errorcode": error.errorcode, "message": error.message,
        }),
        Shape::TokenPhp => {
            return serde_json::json!({
                "error": error.message, "errorcode": error.errorcode, "stacktrace": null,
                "debuginfo": debuginfo, "reproductionlink": null,
            })
        }
        Shape::Ajax => serde_json::json!({
            "message": error.message, "errorcode": error.errorcode, "link": "", "moreinfourl": "",
        }),
        Shape::Batch => serde_json::json!({
            "exception": error.exception, "errorcode": error.errorcode, "message": error.message,
            "link": "", "moreinfourl": "",
        }),
    };
    if let Some(d) = debuginfo {
        object["debuginfo"] = Value::String(d.to_owned());
    }
    object
}

/// The REST server's error answer, in the format the call asked for.
pub fn error(format: Format, error: &MoodleError, debug: bool) -> HttpResponse {
    let body = match format {
        Format::Json => exception(error, Shape::Rest, debug).to_string(),
        Format::Xml => {
            let mut out = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"{}\">\n<ERRORCODE>{}</ERRORCODE>\n<MESSAGE>{}</MESSAGE>\n",
                escape(error.exception),
                escape(error.errorcode),
                escape(&error.message)
            );
            if let Some(d) = error.debuginfo.as_deref().filter(|_| debug) {
                out.push_str(&format!("<DEBUGINFO>{}</DEBUGINFO>\n", escape(d)));
            }
            out.push_str("</EXCEPTION>\n");
            out
        }
    };
    response(format, body)
}

fn xmlize(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push_str("<SINGLE>\n");
            for (key, v) in map {
                out.push_str(&format!("<KEY name=\"{}\">", escape(key)));
                xmlize(v, out);
                out.push_str("</KEY>\n");
            }
            out.push_str("</SINGLE>\n");
        }
        Value::Array(items) => {
            out.push_str("<MULTIPLE>\n");
            for item in items {
                xmlize(item, out);
            }
            out.push_str("</MULTIPLE>\n");
        }
        Value::Null => out.push_str("<VALUE null=\"null\"/>\n"),
        // Moodle writes booleans as 1/0 in XML.
        Value::Bool(b) => out.push_str(&format!("<VALUE>{}</VALUE>\n", u8::from(*b))),
        Value::Number(n) => out.push_str(&format!("<VALUE>{n}</VALUE>\n")),
        Value::String(s) => out.push_str(&format!("<VALUE>{}</VALUE>\n", escape(s))),
    }
}

/// PHP's htmlspecialchars with ENT_COMPAT: & < > " (not ').
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_matches_moodles_shape() {
        let mut out = String::new();
        xmlize(&serde_json::json!({"removed": true, "warnings": []}), &mut out);
        assert_eq!(
            out,
            "<SINGLE>\n<KEY name=\"removed\"><VALUE>1</VALUE>\n</KEY>\n<KEY name=\"warnings\"><MULTIPLE>\n</MULTIPLE>\n</KEY>\n</SINGLE>\n"
        );
    }
}
