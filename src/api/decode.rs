//! Request decoding that refuses ambiguity: identifiers in paths have one
//! spelling, and JSON request bodies are decoded the way Go decodes them
//! for Portainer's handlers (top-level field names match ignoring case, unknown fields are
//! ignored), except that an ambiguous body is refused: a key that appears
//! twice in one object, at any depth, and two top-level keys that differ
//! only by case (Go would fill the same field from both, keeping whichever
//! came last) are a 400. Two parsers that disagree about which value wins
//! are how a checked value and a used value come apart.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

pub use crate::ids::parse_id;
pub use crate::strict_json::parse_strict;

/// Decodes a management route's JSON body into `T`, whose fields use
/// `#[serde(rename_all = "lowercase")]` (top-level keys are lower-cased).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::invalid_payload("EOF"));
    }
    let v = parse_strict(bytes).map_err(|e| ApiError::invalid_payload(e.to_string()))?;
    let map = match v {
        Value::Object(m) => m,
        other => return Err(ApiError::invalid_payload(format!("expected a JSON object, got {}", kind(&other)))),
    };
    let mut lowered = Map::with_capacity(map.len());
    for (k, v) in map {
        let lower = k.to_lowercase();
        if lowered.contains_key(&lower) {
            return Err(ApiError::invalid_payload(format!(
                "the key {k:?} appears twice (keys are matched ignoring case)"
            )));
        }
        lowered.insert(lower, v);
    }
    serde_json::from_value(Value::Object(lowered)).map_err(|e| ApiError::invalid_payload(e.to_string()))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    struct Body {
        #[serde(default)]
        username: String,
        #[serde(default)]
        nested: Option<Value>,
    }

    #[test]
    fn ordinary_bodies_decode_with_go_case_rules() {
        let b: Body = decode_json(br#"{"UserName":"a","other":[1,2.5,-3,null,true,{"x":"y"}]}"#).unwrap();
        assert_eq!(b.username, "a");
        let v = parse_strict(br#"{"a":[1,2.5,-3,null,true,{"x":"y"}],"b":{"c":{}}}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a":[1,2.5,-3,null,true,{"x":"y"}],"b":{"c":{}}}));
    }

    #[test]
    fn repeated_keys_are_refused_at_every_depth() {
        for body in [
            &br#"{"Username":"a","Username":"b"}"#[..],
            br#"{"Username":"a","username":"b"}"#,
            br#"{"USERNAME":"a","UserName":"b"}"#,
            br#"{"nested":{"k":1,"k":2}}"#,
            br#"{"nested":[{"deep":{"k":1,"k":1}}]}"#,
            br#"{"unknown":"x","Unknown":"y"}"#,
        ] {
            let e = decode_json::<Body>(body).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
            assert!(e.details.contains("appears twice"), "{}: {}", String::from_utf8_lossy(body), e.details);
        }
        // Nested keys that differ by case are distinct keys (maps of names).
        let b: Body = decode_json(br#"{"nested":{"k":1,"K":2}}"#).unwrap();
        assert_eq!(b.nested.unwrap()["K"], 2);
    }

    #[test]
    fn identifiers_have_one_spelling() {
        assert_eq!(parse_id("0", "environment").unwrap(), 0);
        assert_eq!(parse_id("1", "environment").unwrap(), 1);
        assert_eq!(parse_id("18446744073709551615", "environment").unwrap(), u64::MAX);
        for raw in ["", "01", "00", "+1", "-1", " 1", "1 ", "1.0", "1e3", "0x1", "１", "18446744073709551616", "abc"] {
            let e = parse_id(raw, "environment").unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{raw:?}");
            assert_eq!(e.message, "Invalid environment identifier route variable", "{raw:?}");
        }
    }

    #[test]
    fn other_malformed_bodies_are_still_400() {
        for body in [&b""[..], b"  ", b"[]", b"{", br#"{"a":1} x"#, br#"{"a":1}{"a":2}"#] {
            let e = decode_json::<Body>(body).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
        }
    }
}
