//! Reading a JSON body the way Docker's Go decoder (`encoding/json` into a
//! struct) reads it, so the fields Berth checks are the fields Docker uses.
//!
//! Go matches an object key to a struct field case-insensitively (after
//! its own folding, in which `ſ` is `s`, the Kelvin sign `K` is `k` and
//! `ı`/`İ` are `i`), and when a key appears twice the last one wins. Serde
//! and most JSON parsers differ on both, which is how `{"hostconfig": ...}`
//! or `{"HostConfig": {}, "HostConfig": {...}}` slip past naive checks. So
//! a body is parsed once into a [`Value`] while refusing any object with a
//! repeated key, and every field lookup goes through [`field`], which folds
//! like Go and refuses two keys that name one field. Map-typed fields
//! (`Labels`, `Sysctls`, `DriverOpts`) are plain maps in Go too, where keys
//! are exact, and are read with ordinary map access.

use serde_json::{Map, Value};

use super::deny::{Denial, DenyRule, Verdict};

/// Parses an inspected body: well-formed JSON (serde_json's depth limit
/// applies), no repeated key in any object.
pub fn parse(body: &[u8]) -> Verdict<Value> {
    match crate::strict_json::parse_strict(body) {
        Ok(v) => Ok(v),
        Err(e) if e.to_string().starts_with(crate::strict_json::REPEATED_KEY) => {
            Err(Denial::new(DenyRule::BodyAmbiguous, e.to_string()))
        }
        Err(e) => Err(Denial::new(DenyRule::BodyInvalid, format!("invalid JSON: {e}"))),
    }
}

/// Go's key folding (`encoding/json`'s `foldName`): ASCII upper-cased, any
/// other rune mapped through `ToUpper(ToLower(r))`. Only four non-ASCII
/// runes fold onto ASCII letters, which is all that matters for matching
/// Docker's (ASCII) field names; others are kept as they are.
fn fold_char(c: char) -> char {
    match c {
        'a'..='z' => c.to_ascii_uppercase(),
        '\u{017F}' => 'S', // ſ (long s)
        '\u{212A}' => 'K', // Kelvin sign
        '\u{0130}' | '\u{0131}' => 'I',
        _ => c,
    }
}

/// Whether JSON key `key` names the Go field `name` (ASCII).
pub fn names_field(key: &str, name: &str) -> bool {
    let mut k = key.chars().map(fold_char);
    let mut n = name.chars().map(fold_char);
    loop {
        match (k.next(), n.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The value of Go struct field `name` in `obj`, matched as Go matches it;
/// two keys naming the field are refused (Go would silently take the last).
/// `at` is the path of `obj` for the error detail.
pub fn field<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Verdict<Option<&'a Value>> {
    let mut found: Option<(&str, &Value)> = None;
    for (k, v) in obj {
        if names_field(k, name) {
            if let Some((first, _)) = found {
                return Err(Denial::new(
                    DenyRule::BodyAmbiguous,
                    format!("{} is given twice ({first:?} and {k:?})", join(at, name)),
                ));
            }
            found = Some((k, v));
        }
    }
    // JSON null leaves a Go field at its zero value: the same as absent.
    Ok(found.map(|(_, v)| v).filter(|v| !v.is_null()))
}

/// `at.name`, or `name` at the top.
pub fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn wrong_type(at: &str, want: &str) -> Denial {
    Denial::new(DenyRule::BodyInvalid, format!("{at} must be {want}"))
}

/// A struct-typed field: an object or absent.
pub fn object<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Verdict<Option<&'a Map<String, Value>>> {
    match field(obj, name, at)? {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(wrong_type(&join(at, name), "an object")),
    }
}

/// A string field ("" when absent, Go's zero value).
pub fn string<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Verdict<&'a str> {
    match field(obj, name, at)? {
        None => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(wrong_type(&join(at, name), "a string")),
    }
}

/// A boolean field (false when absent).
pub fn boolean(obj: &Map<String, Value>, name: &str, at: &str) -> Verdict<bool> {
    match field(obj, name, at)? {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(wrong_type(&join(at, name), "a boolean")),
    }
}

/// A list field (empty when absent).
pub fn array<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Verdict<&'a [Value]> {
    match field(obj, name, at)? {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(wrong_type(&join(at, name), "a list")),
    }
}

/// A list of strings (empty when absent).
pub fn strings<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Verdict<Vec<&'a str>> {
    array(obj, name, at)?
        .iter()
        .map(|v| v.as_str().ok_or_else(|| wrong_type(&join(at, name), "a list of strings")))
        .collect()
}

/// A Go map field (exact keys), or absent.
pub fn map<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Verdict<Option<&'a Map<String, Value>>> {
    object(obj, name, at)
}

/// A `map[string]string` field: every value must be a string.
pub fn string_map<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Verdict<Vec<(&'a str, &'a str)>> {
    let Some(m) = map(obj, name, at)? else { return Ok(Vec::new()) };
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.as_str(), s.as_str())),
            _ => Err(wrong_type(&join(at, name), "a map of strings")),
        })
        .collect()
}

/// The body's top level, which must be an object.
pub fn top(v: &Value) -> Verdict<&Map<String, Value>> {
    v.as_object().ok_or_else(|| wrong_type("the body", "a JSON object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(parse(br#"{"a":1,"a":2}"#).unwrap_err().rule, DenyRule::BodyAmbiguous);
        let deep = br#"{"HostConfig":{"Privileged":false,"Privileged":true}}"#;
        assert_eq!(parse(deep).unwrap_err().rule, DenyRule::BodyAmbiguous);
        let in_list = br#"{"Mounts":[{"Type":"volume","Type":"bind"}]}"#;
        assert_eq!(parse(in_list).unwrap_err().rule, DenyRule::BodyAmbiguous);
        // Escapes decode before the comparison.
        assert_eq!(parse(br#"{"Type":"a","\u0054ype":"b"}"#).unwrap_err().rule, DenyRule::BodyAmbiguous);
        assert!(parse(br#"{"a":1,"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn bad_json_is_refused() {
        for b in [&b""[..], b"{", b"{} {}", b"{\"a\":\"\\ud800\"}", b"\xef\xbb\xbf{}", b"{\"a\":\"\xff\"}"] {
            assert_eq!(parse(b).unwrap_err().rule, DenyRule::BodyInvalid, "{:?}", String::from_utf8_lossy(b));
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(parse(deep.as_bytes()).unwrap_err().rule, DenyRule::BodyInvalid);
    }

    #[test]
    fn keys_fold_like_go() {
        assert!(names_field("hostconfig", "HostConfig"));
        assert!(names_field("HOSTCONFIG", "HostConfig"));
        assert!(names_field("Hoſtconfig", "HostConfig"), "long s folds to s in Go");
        assert!(names_field("Bindſ", "Binds"));
        assert!(names_field("Prıvıleged", "Privileged"), "dotless i folds to i in Go");
        assert!(names_field("Prİvİleged", "Privileged"));
        assert!(names_field("\u{212A}ernelMemory", "KernelMemory"), "Kelvin sign folds to k");
        assert!(!names_field("Privileged2", "Privileged"));
        assert!(!names_field("Privilege", "Privileged"));
        assert!(!names_field("Privilégéd", "Privileged"));
    }

    #[test]
    fn two_spellings_of_one_field_are_refused() {
        let v = parse(br#"{"HostConfig":{},"hostconfig":{"Privileged":true}}"#).unwrap();
        let err = object(top(&v).unwrap(), "HostConfig", "").unwrap_err();
        assert_eq!(err.rule, DenyRule::BodyAmbiguous);
        assert!(err.detail.contains("HostConfig"), "{err:?}");
        let v = parse(br#"{"hostCONFIG":{"privileged":true}}"#).unwrap();
        let hc = object(top(&v).unwrap(), "HostConfig", "").unwrap().unwrap();
        assert!(boolean(hc, "Privileged", "HostConfig").unwrap());
    }

    #[test]
    fn types_are_checked_and_null_is_absent() {
        let v = parse(br#"{"Privileged":"true","Binds":null,"CapAdd":"ALL","Sysctls":{"a":1}}"#).unwrap();
        let o = top(&v).unwrap();
        assert_eq!(boolean(o, "Privileged", "").unwrap_err().rule, DenyRule::BodyInvalid);
        assert!(strings(o, "Binds", "").unwrap().is_empty());
        assert_eq!(strings(o, "CapAdd", "").unwrap_err().rule, DenyRule::BodyInvalid);
        assert_eq!(string_map(o, "Sysctls", "").unwrap_err().rule, DenyRule::BodyInvalid);
        assert_eq!(top(&Value::Null).unwrap_err().rule, DenyRule::BodyInvalid);
    }
}
