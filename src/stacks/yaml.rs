//! Stack files read as the deployers read them: strict UTF-8 YAML parsed
//! by a real YAML parser, aliases resolved and `<<` merge keys flattened
//! the way PyYAML (Compose v1) and go-yaml (the Docker CLI) flatten them.
//!
//! What a standard user's file may contain is decided on this structure
//! (see [`super::policy`]), never on the text: YAML spells one key in many
//! ways (quoted, folded, escaped, flow style, behind an alias or a merge
//! key), and all of them end up as the same string key here.

use serde_norway::{Mapping, Value};

/// Most nested levels of merge keys followed: real files use one or two.
const MAX_MERGE_DEPTH: usize = 32;

/// The text of a stack file, when it is strict UTF-8 YAML could read
/// unambiguously: no byte order mark (Compose v1 would honour a UTF-16
/// one that Berth would not see), no invalid sequence, and only the
/// characters YAML allows in a stream (no NUL, so a UTF-16 file without a
/// mark cannot pass as ASCII with holes).
pub fn decode(bytes: &[u8]) -> Result<&str, String> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err("the file starts with a byte order mark: save it as UTF-8 without one".into());
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err("the file is UTF-16: save it as UTF-8".into());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the file is not valid UTF-8: {e}"))?;
    if let Some((i, c)) = text.char_indices().find(|(_, c)| !yaml_printable(*c)) {
        let line = text[..i].matches('\n').count() + 1;
        return Err(format!(
            "the file contains the character U+{:04X} on line {line}, which YAML does not allow",
            c as u32
        ));
    }
    Ok(text)
}

/// YAML 1.2's `c-printable`.
fn yaml_printable(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

/// One YAML document, aliases resolved (with the parser's expansion
/// limit, so an alias bomb is an error), merge keys flattened.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut v: Value = serde_norway::from_str(text).map_err(|e| format!("the file is not valid YAML: {e}"))?;
    flatten(&mut v, 0)?;
    Ok(v)
}

/// Flattens `<<` keys everywhere: the mapping's own keys win over merged
/// ones, and of several merged mappings the first wins (YAML's merge key
/// type, as PyYAML and go-yaml implement it). Merge sources are flattened
/// first, so merges of merges work.
fn flatten(v: &mut Value, depth: usize) -> Result<(), String> {
    if depth > MAX_MERGE_DEPTH {
        return Err("the file nests merge keys or collections too deeply".into());
    }
    match v {
        Value::Mapping(m) => {
            if let Some(merge) = m.remove("<<") {
                let sources = match merge {
                    Value::Mapping(src) => vec![src],
                    Value::Sequence(seq) => {
                        let mut out = Vec::new();
                        for s in seq {
                            match s {
                                Value::Mapping(src) => out.push(src),
                                _ => return Err("a merge key (<<) must name mappings".into()),
                            }
                        }
                        out
                    }
                    _ => return Err("a merge key (<<) must name a mapping or a list of mappings".into()),
                };
                for src in sources {
                    let mut src = Value::Mapping(src);
                    flatten(&mut src, depth + 1)?;
                    if let Value::Mapping(src) = src {
                        merge_into(m, src);
                    }
                }
            }
            for (_, child) in m.iter_mut() {
                flatten(child, depth + 1)?;
            }
        }
        Value::Sequence(s) => {
            for child in s {
                flatten(child, depth + 1)?;
            }
        }
        Value::Tagged(t) => flatten(&mut t.value, depth + 1)?,
        _ => {}
    }
    Ok(())
}

fn merge_into(m: &mut Mapping, src: Mapping) {
    for (k, v) in src {
        m.entry(k).or_insert(v);
    }
}

/// The string keys of a mapping, or why it has others.
pub fn string_keys<'a>(m: &'a Mapping, at: &str) -> Result<Vec<(&'a str, &'a Value)>, String> {
    m.iter()
        .map(|(k, v)| match k {
            Value::String(s) => Ok((s.as_str(), v)),
            _ => Err(format!("{at}: keys must be plain strings")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &Value) -> Vec<String> {
        v.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn encodings() {
        assert!(decode(b"services: {}\n").is_ok());
        assert!(decode(b"\xEF\xBB\xBFservices: {}\n").unwrap_err().contains("byte order mark"));
        assert!(decode(b"\xFF\xFEs\0e\0").unwrap_err().contains("UTF-16"));
        assert!(decode(b"s\0e\0r\0").unwrap_err().contains("U+0000"));
        assert!(decode(b"a: \xC3\x28\n").unwrap_err().contains("UTF-8"));
        assert!(decode(b"a: \x1b[31m\n").is_err());
        assert!(decode("a: é ✓ 🐳\n".as_bytes()).is_ok());
    }

    #[test]
    fn every_spelling_of_a_key_is_the_same_key() {
        for text in [
            "env_file: x",
            "\"env_file\": x",
            "'env_file': x",
            "\"env\\u005ffile\": x",
            "\"env\\x5ffile\": x",
            "{env_file: x}",
            "? env_file\n: x",
            "? \"env\\\n  _file\"\n: x",
            "!!str env_file: x",
        ] {
            let v = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(keys(&v), ["env_file"], "{text}");
        }
    }

    #[test]
    fn merges_and_aliases() {
        let text = "x-a: &a {env_file: /etc/shadow, image: a}\n\
                    x-b: &b {<<: *a, privileged: true}\n\
                    s:\n  <<: [*b, {image: c, user: u}]\n  image: own\n";
        let v = parse(text).unwrap();
        let s = &v["s"];
        assert_eq!(s["image"], "own", "own keys win");
        assert_eq!(s["env_file"], "/etc/shadow", "merges of merges are followed");
        assert_eq!(s["privileged"], true);
        assert_eq!(s["user"], "u");
        assert!(s.as_mapping().unwrap().get("<<").is_none());
        assert!(parse("a: &a [1]\nb: {<<: *a}\n").is_err(), "a merge of a list");
        assert!(parse("a: 1\na: 2\n").is_err(), "duplicate keys");
        assert!(parse("a: 1\n---\nb: 2\n").is_err(), "two documents");
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n\
                    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
                    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n\
                    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
        assert!(parse(bomb).is_err(), "alias expansion is bounded");
    }
}
