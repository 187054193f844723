//! Request parameters as PHP reads them: GET and POST merged (POST wins), with array syntax
//! `a[0][b]=x` building nested structures.

use super::error::MoodleError;
use std::collections::BTreeMap;

const MAX_PARAMS: usize = 1000;
const MAX_DEPTH: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    Value(String),
    Map(BTreeMap<String, Param>),
}

#[derive(Clone, Debug, Default)]
pub struct Params {
    root: BTreeMap<String, Param>,
    /// Names that came in the query string (some values must not, e.g. a private token).
    from_query: Vec<String>,
}

impl Params {
    /// Parses the query string and a form-encoded body; bytes that are not UTF-8 are replaced,
    /// never rejected with a panic.
    pub fn parse(query: &[u8], body: &[u8]) -> Result<Self, MoodleError> {
        let mut params = Params::default();
        let mut count = 0;
        for (source_is_query, bytes) in [(true, query), (false, body)] {
            for (key, value) in form_urlencoded::parse(bytes) {
                count += 1;
                if count > MAX_PARAMS {
                    return Err(MoodleError::invalid_parameter("Too many parameters."));
                }
                // Plain names (nearly all of them) go straight in; only `a[b]` names are split.
                if !key.contains('[') {
                    if key.is_empty() {
                        continue;
                    }
                    let name = key.into_owned();
                    if source_is_query {
                        params.from_query.push(name.clone());
                    }
                    params.root.insert(name, Param::Value(value.into_owned()));
                    continue;
                }
                let path = split_key(&key);
                if path.is_empty() || path.len() > MAX_DEPTH {
                    continue;
                }
                if source_is_query {
                    params.from_query.push(path[0].clone());
                }
                insert(&mut params.root, &path, value.into_owned());
            }
        }
        Ok(params)
    }

    pub fn remove(&mut self, name: &str) -> Option<Param> {
        self.root.remove(name)
    }

    /// Drops every parameter whose name starts with `prefix` (the server's own settings).
    pub fn remove_prefixed(&mut self, prefix: &str) {
        self.root.retain(|name, _| !name.starts_with(prefix));
    }

    /// Takes a scalar parameter out, if present.
    pub fn take_text(&mut self, name: &str) -> Result<Option<String>, MoodleError> {
        self.text(name)?;
        Ok(match self.root.remove(name) {
            Some(Param::Value(v)) => Some(v),
            _ => None,
        })
    }

    pub fn came_in_query(&self, name: &str) -> bool {
        self.from_query.iter().any(|n| n == name)
    }

    /// A scalar parameter, if present.
    pub fn text(&self, name: &str) -> Result<Option<&str>, MoodleError> {
        match self.root.get(name) {
            None => Ok(None),
            Some(Param::Value(v)) => Ok(Some(v)),
            Some(Param::Map(_)) => Err(MoodleError::invalid_parameter(format!(
                "{name} => Invalid parameter value detected: Scalar type expected, array or object received."
            ))),
        }
    }

    pub fn required_text(&self, name: &str) -> Result<&str, MoodleError> {
        self.text(name)?.ok_or_else(|| MoodleError::missing_key(name))
    }

    pub fn required_int(&self, name: &str) -> Result<i64, MoodleError> {
        let raw = self.required_text(name)?;
        raw.trim().parse().map_err(|_| {
            MoodleError::invalid_parameter(format!(
                "{name} => Invalid parameter value detected: Invalid external api parameter: the value is \"{}\", the server was expecting \"int\" type",
                raw.chars().take(100).collect::<String>()
            ))
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.root.keys()
    }

    /// A list of structures (`requests[0][function]=…&requests[1][function]=…`), in index order;
    /// absent means empty.
    pub fn list(&self, name: &str) -> Result<Vec<Params>, MoodleError> {
        let not_a_list = || {
            MoodleError::invalid_parameter(format!(
                "{name} => Invalid parameter value detected: Only arrays accepted. The bad value is: ''"
            ))
        };
        let items = match self.root.get(name) {
            None => return Ok(Vec::new()),
            Some(Param::Value(_)) => return Err(not_a_list()),
            Some(Param::Map(items)) => items,
        };
        let mut indexed: Vec<(usize, Params)> = Vec::with_capacity(items.len());
        for (index, item) in items {
            let (Ok(index), Param::Map(fields)) = (index.parse::<usize>(), item) else { return Err(not_a_list()) };
            indexed.push((index, Params { root: fields.clone(), from_query: Vec::new() }));
        }
        indexed.sort_by_key(|(i, _)| *i);
        Ok(indexed.into_iter().map(|(_, p)| p).collect())
    }
}

impl Params {
    /// A list of integers (`keyids[0]=4&keyids[1]=5`, or `keyids[]=4`), in index order; absent
    /// means empty. Anything else is Moodle's `invalidparameter`.
    pub fn int_list(&self, name: &str) -> Result<Vec<i64>, MoodleError> {
        let bad = |detail: String| {
            MoodleError::invalid_parameter(format!("{name} => Invalid parameter value detected: {detail}"))
        };
        let items = match self.root.get(name) {
            None => return Ok(Vec::new()),
            Some(Param::Value(_)) => return Err(bad("Only arrays accepted.".into())),
            Some(Param::Map(items)) => items,
        };
        let mut indexed: Vec<(usize, i64)> = Vec::with_capacity(items.len());
        for (index, item) in items {
            let index = index.parse::<usize>().map_err(|_| bad("Only arrays accepted.".into()))?;
            let Param::Value(raw) = item else {
                return Err(bad("Scalar type expected, array or object received.".into()));
            };
            let value = raw.trim().parse::<i64>().map_err(|_| {
                bad(format!(
                    "Invalid external api parameter: the value is \"{}\", the server was expecting \"int\" type",
                    raw.chars().take(100).collect::<String>()
                ))
            })?;
            indexed.push((index, value));
        }
        indexed.sort_by_key(|(i, _)| *i);
        Ok(indexed.into_iter().map(|(_, v)| v).collect())
    }
}

/// `a[0][b]` → ["a", "0", "b"]; a malformed bracket ends the path where PHP would.
fn split_key(key: &str) -> Vec<String> {
    let (head, mut rest) = match key.find('[') {
        Some(i) if i > 0 => (&key[..i], &key[i..]),
        _ => return if key.is_empty() { vec![] } else { vec![key.to_owned()] },
    };
    let mut path = vec![head.to_owned()];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(end) = stripped.find(']') else { break };
        path.push(stripped[..end].to_owned());
        rest = &stripped[end + 1..];
    }
    path
}

fn insert(map: &mut BTreeMap<String, Param>, path: &[String], value: String) {
    let mut current = map;
    for (i, segment) in path.iter().enumerate() {
        // PHP appends for `a[]`: use the next free index.
        let key = if segment.is_empty() { current.len().to_string() } else { segment.clone() };
        if i == path.len() - 1 {
            current.insert(key, Param::Value(value));
            return;
        }
        let entry = current.entry(key).or_insert_with(|| Param::Map(BTreeMap::new()));
        if let Param::Value(_) = entry {
            *entry = Param::Map(BTreeMap::new());
        }
        let Param::Map(next) = entry else { unreachable!("just made a map") };
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_arrays_and_post_over_get() {
        let p =
            Params::parse(b"wstoken=abc&a=1", b"a=2&options[0][name]=x&options[0][value]=y&ids[]=4&ids[]=5").unwrap();
        assert_eq!(p.text("a").unwrap(), Some("2"));
        assert!(p.came_in_query("wstoken"));
        let Some(Param::Map(options)) = p.root.get("options") else { panic!() };
        let Some(Param::Map(first)) = options.get("0") else { panic!() };
        assert_eq!(first.get("name"), Some(&Param::Value("x".into())));
        let Some(Param::Map(ids)) = p.root.get("ids") else { panic!() };
        assert_eq!(ids.len(), 2);
        assert!(p.text("options").is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let p = Params::parse(b"%ff%fe=%00&[=]&a[b=c&]]]=1&&&=", &[0xff, 0x00, b'=', 0x80]).unwrap();
        assert!(p.required_int("nope").is_err());
        let many = "x=1&".repeat(2000);
        assert!(Params::parse(many.as_bytes(), b"").is_err());
    }
}

impl Params {
    /// Parameters from a JSON object (the AJAX services send `args` as JSON).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, MoodleError> {
        let serde_json::Value::Object(map) = value else {
            return Err(MoodleError::invalid_parameter("Only arrays accepted."));
        };
        fn convert(value: &serde_json::Value, depth: usize) -> Param {
            match value {
                serde_json::Value::Object(m) if depth < MAX_DEPTH => {
                    Param::Map(m.iter().map(|(k, v)| (k.clone(), convert(v, depth + 1))).collect())
                }
                serde_json::Value::Array(a) if depth < MAX_DEPTH => {
                    Param::Map(a.iter().enumerate().map(|(i, v)| (i.to_string(), convert(v, depth + 1))).collect())
                }
                serde_json::Value::String(s) => Param::Value(s.clone()),
                serde_json::Value::Bool(b) => Param::Value(if *b { "1".into() } else { "0".into() }),
                serde_json::Value::Null => Param::Value(String::new()),
                other => Param::Value(other.to_string()),
            }
        }
        Ok(Params {
            root: map.iter().take(MAX_PARAMS).map(|(k, v)| (k.clone(), convert(v, 1))).collect(),
            from_query: vec![],
        })
    }
}

/// Largest request body read; a web-service call carries small forms.
pub const MAX_BODY: usize = 1024 * 1024;

/// Reads the body up to `MAX_BODY`; `None` when it is larger or breaks off.
pub async fn read_body(mut payload: actix_web::web::Payload) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    use futures_util::StreamExt;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.ok()?;
        if body.len() + chunk.len() > MAX_BODY {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// Reads the query string and body into PHP-style parameters, or Moodle's error.
pub async fn read_params(
    req: &actix_web::HttpRequest,
    payload: actix_web::web::Payload,
) -> Result<Params, MoodleError> {
    let body = read_body(payload).await.ok_or_else(MoodleError::request_too_large)?;
    Params::parse(req.query_string().as_bytes(), &body)
}
