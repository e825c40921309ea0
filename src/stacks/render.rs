//! Variable substitution for swarm stacks, done by Berth.
//!
//! `docker stack deploy` substitutes `${VAR}` from its own process
//! environment and reads no env file, and a stack's variables must never
//! be in a deployer's environment ([`super::env`]). So Berth substitutes
//! them itself, on the parsed file, with the grammar of the Docker CLI's
//! template package (`$$`, `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`,
//! `${VAR:?e}`, `${VAR?e}`, `${VAR:+a}`, `${VAR+a}`; unset is empty), in
//! string values only (never keys, as the CLI). `environment` entries
//! without a value take the stack's variable of that name, as the CLI
//! takes them from its environment. Every `$` left is doubled, since the
//! CLI substitutes what it reads. The result is written as JSON (YAML's
//! subset with no implicit typing, so no string turns into a number or a
//! boolean on the way back) next to the original, so relative paths
//! resolve the same.
//!
//! Compose itself does this from the env file, so this is for swarm only.

use std::collections::HashMap;

use serde_norway::Value;

use crate::store::model::Pair;

/// Substitutes `${...}` in one string.
pub fn interpolate(s: &str, vars: &HashMap<&str, &str>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| format!("Invalid template: {s:?}"))?;
            out.push_str(&braced_value(&braced[..end], vars, s)?);
            rest = &braced[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                return Err(format!("Invalid template: {s:?}"));
            }
            out.push_str(vars.get(&after[..len]).copied().unwrap_or(""));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn name_len(s: &str) -> usize {
    let mut n = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        n = i + c.len_utf8();
    }
    n
}

fn braced_value(inner: &str, vars: &HashMap<&str, &str>, whole: &str) -> Result<String, String> {
    let len = name_len(inner);
    if len == 0 {
        return Err(format!("Invalid template: {whole:?}"));
    }
    let (name, op) = inner.split_at(len);
    let value = vars.get(name).copied();
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let v = value.unwrap_or("").to_string();
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    let present = if colon { non_empty } else { set };
    if op.is_empty() && !colon {
        return Ok(v);
    }
    let arg = op.get(1..).unwrap_or("");
    match op.chars().next() {
        Some('-') => Ok(if present { v } else { arg.to_string() }),
        Some('+') => Ok(if present { arg.to_string() } else { String::new() }),
        Some('?') if present => Ok(v),
        Some('?') => Err(format!("required variable {name} is missing a value: {arg}")),
        _ => Err(format!("Invalid template: {whole:?}")),
    }
}

fn walk(v: &mut Value, vars: &HashMap<&str, &str>) -> Result<(), String> {
    match v {
        // The CLI substitutes the rendered file again: `$` is doubled.
        Value::String(s) => *s = interpolate(s, vars)?.replace('$', "$$"),
        Value::Sequence(seq) => seq.iter_mut().try_for_each(|c| walk(c, vars))?,
        Value::Mapping(m) => m.iter_mut().try_for_each(|(_, c)| walk(c, vars))?,
        Value::Tagged(t) => walk(&mut t.value, vars)?,
        _ => {}
    }
    Ok(())
}

/// `environment: [NAME]` and `environment: {NAME: }` take the variable.
fn fill_environment(doc: &mut Value, vars: &HashMap<&str, &str>) {
    let Some(Value::Mapping(services)) = doc.get_mut("services") else { return };
    for (_, svc) in services.iter_mut() {
        match svc.get_mut("environment") {
            Some(Value::Sequence(list)) => {
                for e in list.iter_mut() {
                    if let Value::String(s) = e {
                        if !s.contains('=') {
                            if let Some(v) = vars.get(s.as_str()) {
                                *s = format!("{s}={}", v.replace('$', "$$"));
                            }
                        }
                    }
                }
            }
            Some(Value::Mapping(m)) => {
                for (k, val) in m.iter_mut() {
                    let empty = matches!(val, Value::Null) || val.as_str() == Some("");
                    if let (true, Some(v)) = (empty, k.as_str().and_then(|k| vars.get(k))) {
                        *val = Value::String(v.replace('$', "$$"));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The file as `docker stack deploy` should read it, as JSON.
pub fn render(doc: &Value, env: &[Pair]) -> Result<Vec<u8>, String> {
    let vars: HashMap<&str, &str> = env.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
    let mut doc = doc.clone();
    walk(&mut doc, &vars)?;
    fill_environment(&mut doc, &vars);
    serde_json::to_vec_pretty(&doc).map_err(|e| format!("the file cannot be rendered: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_grammar() {
        let vars: HashMap<&str, &str> = [("A", "a"), ("E", "")].into_iter().collect();
        for (t, want) in [
            ("x", "x"),
            ("$A-${A}", "a-a"),
            ("$$A $${A}", "$A ${A}"),
            ("${U}|$U", "|"),
            ("${U:-d}${E:-d}${E-d}${A:-d}", "dda"),
            ("${U+x}${E+x}${E:+x}${A:+x}", "xx"),
            ("${A:?m}${E?m}", "a"),
            ("a b;$(id)", ""),
        ] {
            match interpolate(t, &vars) {
                Ok(v) => assert_eq!(v, want, "{t}"),
                Err(_) => assert_eq!(want, "", "{t}"),
            }
        }
        assert!(interpolate("${U:?needed}", &vars).unwrap_err().contains("needed"));
        assert!(interpolate("${A", &vars).is_err());
        assert!(interpolate("${}", &vars).is_err());
    }

    #[test]
    fn rendering_keeps_types_and_fills_environment() {
        let doc = crate::stacks::yaml::parse(
            "services:\n  a:\n    image: \"${IMG}\"\n    ports: ['8080:80']\n    environment: [FOO, 'BAR=${FOO}', NONE]\n  \
             b:\n    environment: {FOO: , X: \"1\"}\n    labels: {\"${FOO}\": yes}\n",
        )
        .unwrap();
        let env = [
            Pair { name: "FOO".into(), value: "it's $HOME".into() },
            Pair { name: "IMG".into(), value: "busybox".into() },
        ];
        let out: serde_json::Value = serde_json::from_slice(&render(&doc, &env).unwrap()).unwrap();
        assert_eq!(out["services"]["a"]["image"], "busybox");
        assert_eq!(out["services"]["a"]["ports"][0], "8080:80");
        assert_eq!(
            out["services"]["a"]["environment"],
            serde_json::json!(["FOO=it's $$HOME", "BAR=it's $$HOME", "NONE"])
        );
        assert_eq!(out["services"]["b"]["environment"], serde_json::json!({"FOO": "it's $$HOME", "X": "1"}));
        assert_eq!(out["services"]["b"]["labels"], serde_json::json!({"${FOO}": "yes"}), "keys are not substituted");
    }
}
