//! A stack's variables (`Env`): they reach the containers and nothing
//! else. The deployer processes never see them in their environment (a
//! program, a loader or a library reads hundreds of variables:
//! `LD_PRELOAD`, `OPENSSL_CONF`, `PYTHONSTARTUP`...); Compose reads them
//! from an env file (`--env-file`, mode 0600 in the run's private scratch
//! folder, removed with it) for variable substitution, and swarm stacks are
//! substituted by Berth itself ([`super::render`]), since `docker stack
//! deploy` reads no env file.
//!
//! Names are identifiers; names Compose would take as its own settings
//! when read from the env file (`DOCKER_*`, `COMPOSE_*`) are refused, and
//! so are values the env file cannot carry unchanged (NUL, line breaks,
//! and `${`, which Compose v1's env file reader expands with no escape).

use crate::store::model::Pair;

use super::deploy::ComposeKind;

/// Most variables in a stack's `Env`.
const MAX_ENV: usize = 1000;
/// Longest variable value.
const MAX_ENV_VALUE: usize = 64 * 1024;
/// Longest variable name.
const MAX_ENV_NAME: usize = 256;

/// Prefixes of the variables Compose takes from the env file as its own
/// configuration (which host, which files, which project).
fn reserved(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("DOCKER_") || upper.starts_with("COMPOSE_")
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`, not reserved; values without NUL, CR, LF
/// or `${`.
pub fn check_env(env: &[Pair]) -> Result<(), String> {
    if env.len() > MAX_ENV {
        return Err(format!("Invalid environment: more than {MAX_ENV} variables"));
    }
    let mut seen = std::collections::HashSet::new();
    for p in env {
        let n = &p.name;
        let valid = n.len() <= MAX_ENV_NAME
            && n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("Invalid environment variable name {n:?}: must match ^[A-Za-z_][A-Za-z0-9_]*$"));
        }
        if reserved(n) {
            return Err(format!(
                "Invalid environment variable name {n:?}: DOCKER_* and COMPOSE_* variables configure the deployer itself"
            ));
        }
        if !seen.insert(n.as_str()) {
            return Err(format!("Invalid environment: {n:?} is given twice"));
        }
        if p.value.len() > MAX_ENV_VALUE {
            return Err(format!("Invalid value for environment variable {n:?}: longer than {MAX_ENV_VALUE} bytes"));
        }
        if p.value.contains(['\0', '\n', '\r']) {
            return Err(format!("Invalid value for environment variable {n:?}: NUL and line breaks are not allowed"));
        }
        if p.value.contains("${") {
            return Err(format!(
                "Invalid value for environment variable {n:?}: \"${{\" is not allowed (Compose would expand it)"
            ));
        }
    }
    Ok(())
}

/// The env file for one Compose run: `prefix` (an admin's repository
/// `.env`, kept as Compose would have read it) then one quoted line per
/// variable, in the quoting the detected Compose reads back unchanged.
pub fn env_file(kind: &ComposeKind, prefix: &[u8], env: &[Pair]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    for p in env {
        let quoted = match kind {
            // python-dotenv: single quotes, `\\` and `\'` escapes.
            ComposeKind::V1 => format!("'{}'", p.value.replace('\\', "\\\\").replace('\'', "\\'")),
            // compose-go: double quotes, `\\`, `\"` and `\$` escapes.
            ComposeKind::Plugin | ComposeKind::StandaloneV2 => {
                format!("\"{}\"", p.value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$"))
            }
        };
        out.extend_from_slice(format!("{}={quoted}\n", p.name).as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: &str, v: &str) -> Pair {
        Pair { name: n.into(), value: v.into() }
    }

    #[test]
    fn names_and_values() {
        let ok = [
            pair("A", "x"),
            pair("_b1", ""),
            pair("LD_PRELOAD", "/x.so"),
            pair("OPENSSL_CONF", "/c"),
            pair("P", "a'b\"c\\$d $(id)"),
        ];
        assert_eq!(check_env(&ok), Ok(()));
        for bad in ["1A", "A-B", "", "A B", "é", "DOCKER_HOST", "docker_host", "COMPOSE_FILE", "compose_project_name"]
        {
            assert!(check_env(&[pair(bad, "v")]).is_err(), "{bad}");
        }
        for bad in ["x\0y", "a\nB=c", "a\rb", "${HOME}", "a${X:-y}"] {
            assert!(check_env(&[pair("A", bad)]).is_err(), "{bad:?}");
        }
        assert!(check_env(&[pair("A", "1"), pair("A", "2")]).is_err());
    }

    #[test]
    fn env_files_quote_every_value() {
        let env = [pair("A", "it's a \\ \"q\" $(id) $HOME #x")];
        assert_eq!(
            String::from_utf8(env_file(&ComposeKind::V1, b"", &env)).unwrap(),
            "A='it\\'s a \\\\ \"q\" $(id) $HOME #x'\n"
        );
        assert_eq!(
            String::from_utf8(env_file(&ComposeKind::Plugin, b"X=1", &env)).unwrap(),
            "X=1\nA=\"it's a \\\\ \\\"q\\\" \\$(id) \\$HOME #x\"\n"
        );
    }
}
