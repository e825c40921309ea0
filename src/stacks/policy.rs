//! What a standard user's stack file may ask the deployer to do, decided
//! on the parsed structure ([`super::yaml`]) with allow lists: a key this
//! module does not know is refused, so a Compose release that adds a key
//! reading host files cannot slip through.
//!
//! Two kinds of rule:
//! - Never for standard users: anything that makes the *deployer* read a
//!   file on Berth's host or run a program there (`env_file`, `build`,
//!   `extends`, `include`, `label_file`, `file:` sources of configs and
//!   secrets, seccomp profiles, credential specs, providers), or join
//!   another container's namespaces (`container:`).
//! - Per endpoint, following its security settings for standard users:
//!   bind mounts (also `driver_opts` of volumes, which can bind), privileged
//!   mode (also unconfined security options), host namespaces (`pid`,
//!   `ipc`, `uts`, `userns_mode`, `cgroup`, `network_mode: host`, the `host`
//!   network), devices (also `blkio_config`, `gpus`, device reservations),
//!   added capabilities and sysctls.
//!
//! A value that Compose interpolates (`$`) where the rule depends on the
//! value counts as the forbidden value: Berth cannot know what it becomes.

use serde_norway::Value;

use super::yaml::string_keys;
use crate::store::model::SecuritySettings;

/// The endpoint settings that apply to a standard user's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub bind_mounts: bool,
    pub privileged: bool,
    pub host_namespaces: bool,
    pub devices: bool,
    pub capabilities: bool,
    pub sysctls: bool,
}

impl Policy {
    pub fn of(s: &SecuritySettings) -> Policy {
        Policy {
            bind_mounts: s.allow_bind_mounts_for_regular_users,
            privileged: s.allow_privileged_mode_for_regular_users,
            host_namespaces: s.allow_host_namespace_for_regular_users,
            devices: s.allow_device_mapping_for_regular_users,
            capabilities: s.allow_container_capabilities_for_regular_users,
            sysctls: s.allow_sysctl_setting_for_regular_users,
        }
    }
}

const TOP: &[&str] = &["version", "name", "services", "networks", "volumes", "configs", "secrets"];

/// Service keys with nothing to check beyond the whole-file rules.
const SERVICE_PLAIN: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "labels",
    "ports",
    "expose",
    "restart",
    "depends_on",
    "healthcheck",
    "hostname",
    "domainname",
    "container_name",
    "working_dir",
    "user",
    "group_add",
    "stop_signal",
    "stop_grace_period",
    "tty",
    "stdin_open",
    "init",
    "logging",
    "networks",
    "dns",
    "dns_search",
    "dns_opt",
    "extra_hosts",
    "links",
    "external_links",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "cpus",
    "cpu_shares",
    "cpu_quota",
    "cpu_period",
    "cpuset",
    "cpu_count",
    "cpu_percent",
    "shm_size",
    "ulimits",
    "oom_kill_disable",
    "oom_score_adj",
    "pids_limit",
    "read_only",
    "tmpfs",
    "platform",
    "profiles",
    "scale",
    "pull_policy",
    "mac_address",
    "cap_drop",
    "configs",
    "secrets",
];

pub fn check(doc: &Value, p: &Policy) -> Result<(), String> {
    no_tags(doc, "the file")?;
    let Value::Mapping(top) = doc else { return Err("the file must be a mapping of Compose keys".into()) };
    for (k, v) in string_keys(top, "the file")? {
        match k {
            _ if k.starts_with("x-") => {}
            "services" => services(v, p)?,
            "volumes" => each(v, "volumes", |name, def| top_volume(name, def, p))?,
            "networks" => each(v, "networks", |name, def| top_network(name, def, p))?,
            "configs" | "secrets" => each(v, k, |name, def| top_file_object(k, name, def))?,
            _ if TOP.contains(&k) => {}
            _ => return Err(refused(k, "is not a key Berth lets standard users deploy")),
        }
    }
    Ok(())
}

fn refused(at: &str, why: &str) -> String {
    format!("{at} {why}")
}

/// YAML tags other than the standard ones make parsers disagree.
fn no_tags(v: &Value, at: &str) -> Result<(), String> {
    match v {
        Value::Tagged(t) => Err(format!("{at}: YAML tags ({}) are not accepted", t.tag)),
        Value::Sequence(s) => s.iter().try_for_each(|c| no_tags(c, at)),
        Value::Mapping(m) => m.iter().try_for_each(|(k, c)| no_tags(k, at).and_then(|_| no_tags(c, at))),
        _ => Ok(()),
    }
}

/// Calls `f` for each entry of a mapping section (null: empty).
fn each(v: &Value, at: &str, mut f: impl FnMut(&str, &Value) -> Result<(), String>) -> Result<(), String> {
    match v {
        Value::Null => Ok(()),
        Value::Mapping(m) => string_keys(m, at)?.into_iter().try_for_each(|(k, v)| f(k, v)),
        _ => Err(format!("{at} must be a mapping")),
    }
}

fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// A value Berth cannot judge because Compose will interpolate it.
fn interpolated(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('$'),
        Value::Sequence(s) => s.iter().any(interpolated),
        Value::Mapping(m) => m.iter().any(|(k, v)| interpolated(k) || interpolated(v)),
        _ => false,
    }
}

/// `true`, or anything but an explicit false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::String(s) => {
            !matches!(s.as_str(), "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE")
        }
        _ => true,
    }
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Sequence(s) => !s.is_empty(),
        Value::Mapping(m) => !m.is_empty(),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn services(v: &Value, p: &Policy) -> Result<(), String> {
    each(v, "services", |name, svc| {
        let at = format!("services.{name}");
        let Value::Mapping(m) = svc else { return Err(format!("{at} must be a mapping")) };
        for (k, v) in string_keys(m, &at)? {
            service_key(&format!("{at}.{k}"), k, v, p)?;
        }
        Ok(())
    })
}

fn needs(allowed: bool, at: &str, what: &str) -> Result<(), String> {
    if allowed {
        Ok(())
    } else {
        Err(format!("{at}: {what} is disabled for standard users on this environment"))
    }
}

fn service_key(at: &str, k: &str, v: &Value, p: &Policy) -> Result<(), String> {
    let host_file = "makes the deployer read a file on Berth's host, which standard users may not do";
    match k {
        _ if k.starts_with("x-") || SERVICE_PLAIN.contains(&k) => Ok(()),
        "env_file" | "build" | "extends" | "label_file" | "credential_spec" => Err(refused(at, host_file)),
        "privileged" => needs(!truthy(v) || p.privileged, at, "privileged mode"),
        "security_opt" => security_opts(at, v, p),
        "cap_add" => needs(!non_empty(v) || p.capabilities, at, "adding capabilities"),
        "sysctls" => needs(!non_empty(v) || p.sysctls, at, "setting sysctls"),
        "devices" | "device_cgroup_rules" | "blkio_config" | "gpus" => {
            needs(!non_empty(v) || p.devices, at, "device mapping")
        }
        "pid" | "ipc" | "uts" | "userns_mode" | "cgroup" | "network_mode" => namespace(at, k, v, p),
        "volumes" => service_volumes(at, v, p),
        "volumes_from" => match v {
            Value::Sequence(s)
                if s.iter().all(|e| str_of(e).is_some_and(|e| !e.starts_with("container:") && !e.contains('$'))) =>
            {
                Ok(())
            }
            _ => Err(refused(at, "may only name services of this stack for standard users")),
        },
        "deploy" => deploy(at, v, p),
        _ => Err(refused(at, "is not a key Berth lets standard users deploy")),
    }
}

/// `pid`, `ipc`, `uts`, `userns_mode`, `cgroup`, `network_mode`.
fn namespace(at: &str, k: &str, v: &Value, p: &Policy) -> Result<(), String> {
    let Some(s) = str_of(v) else { return Err(format!("{at} must be a string")) };
    if s.contains('$') {
        return Err(refused(at, "may not use variables for standard users"));
    }
    if s.starts_with("container:") {
        return Err(refused(at, "may not join another container's namespace for standard users"));
    }
    let host = s == "host" || (k == "userns_mode" && !s.is_empty() && s != "private");
    needs(!host || p.host_namespaces, at, "using the host's namespaces")
}

fn security_opts(at: &str, v: &Value, p: &Policy) -> Result<(), String> {
    let Value::Sequence(opts) = v else {
        return if matches!(v, Value::Null) { Ok(()) } else { Err(format!("{at} must be a list")) };
    };
    for o in opts {
        let Some(o) = str_of(o) else { return Err(format!("{at} entries must be strings")) };
        let (name, value) = o.split_once([':', '=']).unwrap_or((o, ""));
        match name {
            "no-new-privileges" => {}
            _ if o.contains('$') => return Err(refused(at, "may not use variables for standard users")),
            "seccomp" | "apparmor" | "systempaths" if value == "unconfined" => {
                needs(p.privileged, at, "an unconfined security option (privileged mode)")?
            }
            "label" if value == "disable" => needs(p.privileged, at, "disabling labels (privileged mode)")?,
            "label" | "apparmor" => {}
            // A seccomp profile is a file the deployer reads.
            _ => return Err(refused(at, "names a security option standard users may not set")),
        }
    }
    Ok(())
}

/// Where Compose reads a volume source as a path on the host: `.`, `/`,
/// `~` (and anything interpolated, which could become one).
fn host_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~']) || source.contains('$') || source.contains('\\')
}

fn service_volumes(at: &str, v: &Value, p: &Policy) -> Result<(), String> {
    let Value::Sequence(vols) = v else {
        return if matches!(v, Value::Null) { Ok(()) } else { Err(format!("{at} must be a list")) };
    };
    for vol in vols {
        let bind = match vol {
            Value::String(s) => {
                // SOURCE:TARGET[:MODE] or an anonymous TARGET.
                let parts: Vec<&str> = s.split(':').collect();
                parts.len() > 1 && host_path(parts[0]) || s.contains('$')
            }
            Value::Mapping(m) => {
                let kind = m.get("type").and_then(str_of).unwrap_or("volume");
                let source = m.get("source").and_then(str_of).unwrap_or("");
                match kind {
                    "volume" => host_path(source) || interpolated(vol),
                    "tmpfs" => false,
                    "bind" => true,
                    _ => return Err(refused(at, "uses a volume type standard users may not use")),
                }
            }
            _ => return Err(format!("{at} entries must be strings or mappings")),
        };
        needs(!bind || p.bind_mounts, at, "bind mounting host paths")?;
    }
    Ok(())
}

fn deploy(at: &str, v: &Value, p: &Policy) -> Result<(), String> {
    // Device reservations (GPUs) are device mapping.
    let devices = v.get("resources").and_then(|r| r.get("reservations")).and_then(|r| r.get("devices"));
    needs(
        devices.is_none_or(|d| !non_empty(d)) || p.devices,
        &format!("{at}.resources.reservations.devices"),
        "device mapping",
    )
}

fn top_volume(name: &str, def: &Value, p: &Policy) -> Result<(), String> {
    let at = format!("volumes.{name}");
    if let Value::Mapping(m) = def {
        for (k, v) in string_keys(m, &at)? {
            match k {
                "external" | "name" | "labels" | "driver" => {}
                "driver_opts" => needs(
                    !non_empty(v) || p.bind_mounts,
                    &format!("{at}.driver_opts"),
                    "volume driver options (they can bind host paths)",
                )?,
                _ if k.starts_with("x-") => {}
                _ => return Err(refused(&format!("{at}.{k}"), "is not a key Berth lets standard users deploy")),
            }
        }
    }
    Ok(())
}

fn top_network(name: &str, def: &Value, p: &Policy) -> Result<(), String> {
    let at = format!("networks.{name}");
    let mut real_name = name.to_string();
    if let Value::Mapping(m) = def {
        for (k, v) in string_keys(m, &at)? {
            match k {
                "name" => real_name = str_of(v).unwrap_or("$").to_string(),
                "external" => {
                    if let Some(n) = v.get("name") {
                        real_name = str_of(n).unwrap_or("$").to_string();
                    }
                }
                "driver" => {
                    if str_of(v).is_none_or(|d| d == "host" || d.contains('$')) {
                        needs(p.host_namespaces, &format!("{at}.driver"), "the host network")?;
                    }
                }
                "labels" | "attachable" | "internal" | "ipam" | "enable_ipv6" | "driver_opts" => {}
                _ if k.starts_with("x-") => {}
                _ => return Err(refused(&format!("{at}.{k}"), "is not a key Berth lets standard users deploy")),
            }
        }
    }
    if real_name == "host" || real_name.contains('$') {
        needs(p.host_namespaces, &at, "the host network")?;
    }
    Ok(())
}

/// Top-level configs and secrets: only external or inline ones; `file:`
/// (and `environment:`) make the deployer read Berth's host.
fn top_file_object(section: &str, name: &str, def: &Value) -> Result<(), String> {
    let at = format!("{section}.{name}");
    if let Value::Mapping(m) = def {
        for (k, _) in string_keys(m, &at)? {
            match k {
                "external" | "name" | "labels" | "content" | "driver" | "driver_opts" | "template_driver" => {}
                _ if k.starts_with("x-") => {}
                "file" | "environment" => {
                    return Err(refused(
                        &format!("{at}.{k}"),
                        "makes the deployer read a file on Berth's host, which standard users may not do",
                    ))
                }
                _ => return Err(refused(&format!("{at}.{k}"), "is not a key Berth lets standard users deploy")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stacks::yaml::parse;

    const OPEN: Policy = Policy {
        bind_mounts: true,
        privileged: true,
        host_namespaces: true,
        devices: true,
        capabilities: true,
        sysctls: true,
    };
    const SHUT: Policy = Policy {
        bind_mounts: false,
        privileged: false,
        host_namespaces: false,
        devices: false,
        capabilities: false,
        sysctls: false,
    };

    fn verdict(text: &str, p: &Policy) -> Result<(), String> {
        check(&parse(text).unwrap_or_else(|e| panic!("{text}: {e}")), p)
    }

    #[test]
    fn ordinary_files_pass() {
        let ok = "version: '3.8'\nx-common: &c {restart: always}\nservices:\n  web:\n    <<: *c\n    image: nginx\n    \
                  command: [\"cat\", \"file\"]\n    environment: ['A=${A:-x}', B]\n    ports: ['8080:80']\n    \
                  volumes: [data:/data, /anon, {type: volume, source: data, target: /d2}, {type: tmpfs, target: /t}]\n    \
                  labels: {build: yes}\n    security_opt: [no-new-privileges:true]\n    deploy: {replicas: 2}\n    \
                  network_mode: bridge\n    privileged: false\nvolumes:\n  data: {}\nnetworks:\n  front: {driver: overlay}\n\
                  secrets:\n  s: {external: true}\n";
        assert_eq!(verdict(ok, &SHUT), Ok(()));
    }

    #[test]
    fn host_files_are_refused_in_every_spelling() {
        for text in [
            "services:\n  a:\n    env_file: /etc/shadow\n",
            "services:\n  a:\n    \"env_file\": /etc/shadow\n",
            "services:\n  a:\n    \"env\\u005ffile\": /etc/shadow\n",
            "services:\n  a:\n    ? \"env\\\n      _file\"\n    : /etc/shadow\n",
            "services: {a: {env_file: /etc/shadow}}\n",
            "x-e: &e {env_file: /etc/shadow}\nservices:\n  a:\n    <<: *e\n    image: x\n",
            "x-e: &e {env_file: /etc/shadow}\nx-f: &f {<<: *e}\nservices:\n  a: {<<: [*f]}\n",
            "services:\n  a:\n    ? env_file\n    : /etc/shadow\n",
            "services: {a: {build: /}}\n",
            "services: {a: {extends: {file: /etc/x.yml, service: s}}}\n",
            "services: {a: {label_file: /etc/x}}\n",
            "include:\n  - /etc/x.yml\n",
            "secrets:\n  s:\n    file: /etc/shadow\n",
            "configs:\n  s: {\"fi\\x6ce\": /etc/shadow}\n",
            "services: {a: {security_opt: [\"seccomp=/etc/profile.json\"]}}\n",
            "services: {a: {provider: {type: x}}}\n",
            "services: {a: {network_mode: \"container:other\"}}\n",
            "services: {a: {network_mode: \"${M}\"}}\n",
            "services: {a: !custom {image: x}}\n",
        ] {
            assert!(verdict(text, &OPEN).is_err(), "{text}");
        }
    }

    #[test]
    fn endpoint_settings_are_followed() {
        type Allow = fn(&mut Policy);
        let cases: &[(&str, Allow)] = &[
            ("services: {a: {volumes: ['/etc:/x']}}", |p| p.bind_mounts = true),
            ("services: {a: {volumes: ['./:/x:ro']}}", |p| p.bind_mounts = true),
            ("services: {a: {volumes: ['${X}:/x']}}", |p| p.bind_mounts = true),
            ("services: {a: {volumes: [{type: bind, source: /, target: /x}]}}", |p| p.bind_mounts = true),
            ("volumes: {v: {driver_opts: {type: none, o: bind, device: /etc}}}", |p| p.bind_mounts = true),
            ("services: {a: {privileged: true}}", |p| p.privileged = true),
            ("services: {a: {privileged: yes}}", |p| p.privileged = true),
            ("services: {a: {security_opt: ['seccomp:unconfined']}}", |p| p.privileged = true),
            ("services: {a: {pid: host}}", |p| p.host_namespaces = true),
            ("services: {a: {network_mode: host}}", |p| p.host_namespaces = true),
            ("services: {a: {userns_mode: host}}", |p| p.host_namespaces = true),
            ("networks: {h: {external: true, name: host}}", |p| p.host_namespaces = true),
            ("services: {a: {devices: ['/dev/sda:/dev/sda']}}", |p| p.devices = true),
            ("services: {a: {cap_add: [SYS_ADMIN]}}", |p| p.capabilities = true),
            ("services: {a: {sysctls: {net.ipv4.ip_forward: 1}}}", |p| p.sysctls = true),
        ];
        for (text, allow) in cases {
            assert!(verdict(text, &SHUT).is_err(), "{text}");
            let mut p = SHUT;
            allow(&mut p);
            assert_eq!(verdict(text, &p), Ok(()), "{text}");
        }
    }
}
