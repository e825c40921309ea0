//! Checks of create and update bodies against an endpoint's
//! [`SecuritySettings`], for standard users only.
//!
//! One function per place a host privilege can be asked for, shared by every
//! body that can ask for it: a bind mount is refused the same way whether it
//! comes as `HostConfig.Binds`, `HostConfig.Mounts` (CVE-2026-44850), a
//! service's `TaskTemplate.ContainerSpec.Mounts` or a volume created with the
//! local driver's `o=bind` (CVE-2026-44849). Values are read with allow
//! lists: an unknown mount type, namespace mode or security option is
//! refused, not passed. Objects the body points at (another container's
//! namespaces or volumes, a network, a secret) are returned as
//! [`Reference`]s for the caller to check like any owner-only object.

use serde_json::{Map, Value};

use super::control::AccessLabels;
use super::deny::{Denial, DenyRule, Verdict};
use super::gojson::{self as g, join};
use super::ResourceKind;
use crate::store::model::SecuritySettings;

/// The bodies Berth inspects (the rule table names one per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyKind {
    ContainerCreate,
    ContainerUpdate,
    ExecCreate,
    ServiceCreate,
    ServiceUpdate,
    VolumeCreate,
    NetworkCreate,
    NetworkConnect,
    SecretCreate,
    ConfigCreate,
}

impl BodyKind {
    /// The kind of object a successful request creates, for which the proxy
    /// stores a resource control.
    pub fn creates(self) -> Option<ResourceKind> {
        match self {
            BodyKind::ContainerCreate => Some(ResourceKind::Container),
            BodyKind::ServiceCreate => Some(ResourceKind::Service),
            BodyKind::VolumeCreate => Some(ResourceKind::Volume),
            BodyKind::NetworkCreate => Some(ResourceKind::Network),
            BodyKind::SecretCreate => Some(ResourceKind::Secret),
            BodyKind::ConfigCreate => Some(ResourceKind::Config),
            _ => None,
        }
    }
}

/// An object a body points at: the caller must be able to see it (checked
/// like an owner-only route). `id` is as the client wrote it (name, id or
/// id prefix); `at` is the field, for the denial's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: ResourceKind,
    pub id: String,
    pub at: String,
}

/// What an accepted body asks the proxy to do next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    /// Objects to check for visibility before forwarding. A referenced
    /// volume that does not exist yet is fine (Docker creates it); every
    /// other reference must exist and be visible.
    pub references: Vec<Reference>,
    /// `io.portainer.accesscontrol.*` labels of a create body.
    pub labels: AccessLabels,
}

struct Checker<'s> {
    s: &'s SecuritySettings,
    found: Findings,
}

fn deny(rule: DenyRule, detail: impl Into<String>) -> Denial {
    Denial::new(rule, detail)
}

fn allow(allowed: bool, rule: DenyRule, detail: impl FnOnce() -> String) -> Verdict<()> {
    if allowed {
        Ok(())
    } else {
        Err(deny(rule, detail()))
    }
}

fn idx(at: &str, i: usize) -> String {
    format!("{at}[{i}]")
}

/// Inspects `body` (already capped by the caller) as a `kind` request.
pub fn inspect(kind: BodyKind, body: &[u8], settings: &SecuritySettings) -> Verdict<Findings> {
    inspect_value(kind, &g::parse(body)?, settings)
}

/// Inspects an already parsed document: a service's `PreviousSpec`, which
/// a rollback (`POST /services/{id}/update?rollback=previous`) puts back.
pub fn inspect_value(kind: BodyKind, v: &Value, settings: &SecuritySettings) -> Verdict<Findings> {
    let o = g::top(v)?;
    let mut c = Checker { s: settings, found: Findings::default() };
    match kind {
        BodyKind::ContainerCreate => c.container_create(o)?,
        BodyKind::ContainerUpdate => c.resources(o, "")?,
        BodyKind::ExecCreate => {
            allow(!g::boolean(o, "Privileged", "")?, DenyRule::Privileged, || "Privileged".into())?;
        }
        BodyKind::ServiceCreate | BodyKind::ServiceUpdate => c.service_spec(o)?,
        BodyKind::VolumeCreate => c.volume_create(o)?,
        BodyKind::NetworkCreate => c.network_create(o)?,
        BodyKind::NetworkConnect => c.network_connect(o)?,
        BodyKind::SecretCreate | BodyKind::ConfigCreate => {}
    }
    if kind.creates().is_some() {
        c.found.labels = AccessLabels::from_pairs(g::string_map(o, "Labels", "")?);
    }
    Ok(c.found)
}

impl Checker<'_> {
    fn refer(&mut self, kind: ResourceKind, id: &str, at: String) {
        self.found.references.push(Reference { kind, id: id.to_string(), at });
    }

    fn container_create(&mut self, o: &Map<String, Value>) -> Verdict<()> {
        if let Some(hc) = g::object(o, "HostConfig", "")? {
            self.host_config(hc, "HostConfig")?;
        }
        if let Some(nc) = g::object(o, "NetworkingConfig", "")? {
            if let Some(eps) = g::map(nc, "EndpointsConfig", "NetworkingConfig")? {
                for (net, ep) in eps {
                    let at = format!("NetworkingConfig.EndpointsConfig[{net:?}]");
                    self.network_target(net, &at)?;
                    if let Some(ep) = ep.as_object() {
                        for (i, l) in g::strings(ep, "Links", &at)?.into_iter().enumerate() {
                            self.link(l, idx(&join(&at, "Links"), i));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn host_config(&mut self, hc: &Map<String, Value>, at: &str) -> Verdict<()> {
        let s = self.s;
        allow(
            !g::boolean(hc, "Privileged", at)? || s.allow_privileged_mode_for_regular_users,
            DenyRule::Privileged,
            || join(at, "Privileged"),
        )?;
        for (i, b) in g::strings(hc, "Binds", at)?.into_iter().enumerate() {
            let here = idx(&join(at, "Binds"), i);
            match bind_source(b) {
                BindSource::Anonymous => {}
                BindSource::Volume(name) => self.refer(ResourceKind::Volume, name, here),
                BindSource::Host => {
                    allow(s.allow_bind_mounts_for_regular_users, DenyRule::BindMounts, || format!("{here} ({b:?})"))?
                }
            }
        }
        self.mounts(g::array(hc, "Mounts", at)?, &join(at, "Mounts"))?;
        for (i, v) in g::strings(hc, "VolumesFrom", at)?.into_iter().enumerate() {
            let name = v.split(':').next().unwrap_or_default();
            self.refer(ResourceKind::Container, name, idx(&join(at, "VolumesFrom"), i));
        }
        for (i, l) in g::strings(hc, "Links", at)?.into_iter().enumerate() {
            self.link(l, idx(&join(at, "Links"), i));
        }
        self.namespaces(hc, at)?;
        self.resources(hc, at)?;
        let caps = !g::strings(hc, "CapAdd", at)?.is_empty() || !g::strings(hc, "Capabilities", at)?.is_empty();
        allow(!caps || s.allow_container_capabilities_for_regular_users, DenyRule::Capabilities, || {
            join(at, "CapAdd")
        })?;
        let sysctls = !g::string_map(hc, "Sysctls", at)?.is_empty();
        allow(!sysctls || s.allow_sysctl_setting_for_regular_users, DenyRule::Sysctls, || join(at, "Sysctls"))?;
        self.security_options(hc, at)
    }

    /// `HostConfig` resources (also the body of `POST /containers/{id}/update`).
    fn resources(&mut self, r: &Map<String, Value>, at: &str) -> Verdict<()> {
        for name in ["Devices", "DeviceRequests", "DeviceCgroupRules"] {
            let used = !g::array(r, name, at)?.is_empty();
            allow(!used || self.s.allow_device_mapping_for_regular_users, DenyRule::DeviceMapping, || join(at, name))?;
        }
        Ok(())
    }

    fn link(&mut self, link: &str, at: String) {
        let name = link.split(':').next().unwrap_or_default().trim_start_matches('/');
        self.refer(ResourceKind::Container, name, at);
    }

    fn host_ns(&self, at: &str) -> Verdict<()> {
        allow(self.s.allow_host_namespace_for_regular_users, DenyRule::HostNamespace, || at.to_string())
    }

    /// `NetworkMode` and the five other namespace modes: `host` needs the
    /// host-namespace setting, `container:<id>` joins another container's
    /// namespace (a reference), anything else must be a known private mode.
    fn namespaces(&mut self, hc: &Map<String, Value>, at: &str) -> Verdict<()> {
        let net = g::string(hc, "NetworkMode", at)?;
        let here = join(at, "NetworkMode");
        match net.to_ascii_lowercase().as_str() {
            "" | "default" | "bridge" | "none" => {}
            _ => self.network_target(net, &here)?,
        }
        let modes: [(&str, &[&str]); 5] = [
            ("PidMode", &[""]),
            ("IpcMode", &["", "none", "private", "shareable"]),
            ("UTSMode", &[""]),
            ("UsernsMode", &[""]),
            ("CgroupnsMode", &["", "private"]),
        ];
        for (name, private) in modes {
            let mode = g::string(hc, name, at)?;
            let here = join(at, name);
            let lower = mode.to_ascii_lowercase();
            if private.contains(&lower.as_str()) {
                continue;
            }
            if lower == "host" {
                self.host_ns(&here)?;
            } else if let (Some(id), true) = (container_mode(mode), matches!(name, "PidMode" | "IpcMode")) {
                self.refer(ResourceKind::Container, id, here);
            } else {
                return Err(deny(DenyRule::BodyInvalid, format!("{here}: unknown mode {mode:?}")));
            }
        }
        Ok(())
    }

    /// A network named by a container or service: `host` (any case) is the
    /// host namespace, `container:<id>` another container's, anything else
    /// a network to be visible (the caller also refuses the host network
    /// named by id: see [`super::control::check_network_use`]).
    fn network_target(&mut self, net: &str, at: &str) -> Verdict<()> {
        if net.eq_ignore_ascii_case("host") {
            return self.host_ns(at);
        }
        // dockerd's name for the default bridge (the CLI's `EndpointsConfig`
        // key when no `--network` is given): no network object has it.
        if net == "default" {
            return Ok(());
        }
        match container_mode(net) {
            Some(id) => self.refer(ResourceKind::Container, id, at.to_string()),
            None => self.refer(ResourceKind::Network, net, at.to_string()),
        }
        Ok(())
    }

    fn security_options(&mut self, hc: &Map<String, Value>, at: &str) -> Verdict<()> {
        let ok = self.s.allow_security_options_for_regular_users;
        let check = |used: bool, what: String| allow(!used || ok, DenyRule::SecurityOptions, || what);
        for (i, opt) in g::strings(hc, "SecurityOpt", at)?.into_iter().enumerate() {
            check(!harmless_security_opt(opt), format!("{} ({opt:?})", idx(&join(at, "SecurityOpt"), i)))?;
        }
        // Present at all (even `[]`): replaces Docker's masked /proc paths.
        for name in ["MaskedPaths", "ReadonlyPaths"] {
            check(g::field(hc, name, at)?.is_some(), join(at, name))?;
        }
        let runtime = g::string(hc, "Runtime", at)?;
        check(!matches!(runtime, "" | "runc"), format!("{} ({runtime:?})", join(at, "Runtime")))?;
        check(!g::string_map(hc, "Annotations", at)?.is_empty(), join(at, "Annotations"))?;
        let iso = g::string(hc, "Isolation", at)?;
        check(!matches!(iso, "" | "default"), join(at, "Isolation"))
    }

    /// `Mounts` of containers and services: bind and named-pipe mounts are
    /// host paths; volume mounts may carry driver options that are bind
    /// mounts by another name; tmpfs is private; any other type (cluster
    /// volumes, types newer than the table) is for admins.
    fn mounts(&mut self, mounts: &[Value], at: &str) -> Verdict<()> {
        for (i, m) in mounts.iter().enumerate() {
            let here = idx(at, i);
            let m = m.as_object().ok_or_else(|| deny(DenyRule::BodyInvalid, format!("{here} must be an object")))?;
            let ty = g::string(m, "Type", &here)?;
            match ty.to_ascii_lowercase().as_str() {
                "bind" | "npipe" => allow(self.s.allow_bind_mounts_for_regular_users, DenyRule::BindMounts, || {
                    format!("{here}.Type ({ty:?})")
                })?,
                "tmpfs" => {}
                "volume" => {
                    let src = g::string(m, "Source", &here)?;
                    if !src.is_empty() {
                        self.refer(ResourceKind::Volume, src, join(&here, "Source"));
                    }
                    let vo_at = join(&here, "VolumeOptions");
                    if let Some(dc) = g::object(m, "VolumeOptions", &here)?
                        .map(|vo| g::object(vo, "DriverConfig", &vo_at))
                        .transpose()?
                        .flatten()
                    {
                        let dc_at = join(&vo_at, "DriverConfig");
                        let driver = g::string(dc, "Name", &dc_at)?;
                        let opts = g::string_map(dc, "Options", &dc_at)?;
                        self.volume_driver(driver, &opts, &join(&dc_at, "Options"))?;
                    }
                }
                _ => {
                    return Err(deny(DenyRule::AdminOnly, format!("{here}.Type {ty:?} is reserved to administrators")))
                }
            }
        }
        Ok(())
    }

    /// Driver options of a new volume. The local driver mounts whatever
    /// `type`/`device`/`o` say (`o=bind` of a host path, a host block device,
    /// a network share): only a plain tmpfs and `size` are private. Other
    /// drivers' options mean whatever the plugin makes of them, so any is
    /// treated as host storage too.
    fn volume_driver(&mut self, driver: &str, opts: &[(&str, &str)], at: &str) -> Verdict<()> {
        if opts.is_empty() || self.s.allow_bind_mounts_for_regular_users {
            return Ok(());
        }
        let local = matches!(driver, "" | "local");
        let get =
            |k: &str| opts.iter().filter(|(ok, _)| ok.eq_ignore_ascii_case(k)).map(|(_, v)| *v).collect::<Vec<_>>();
        let (ty, dev, o) = (get("type"), get("device"), get("o"));
        let known = opts.iter().all(|(k, _)| ["type", "device", "o", "size"].iter().any(|n| k.eq_ignore_ascii_case(n)));
        let single = ty.len() <= 1 && dev.len() <= 1 && o.len() <= 1;
        let tmpfs_or_none = match (ty.first(), dev.first()) {
            (None, None) => o.is_empty(),
            (Some(t), d) => t.eq_ignore_ascii_case("tmpfs") && d.is_none_or(|d| d.eq_ignore_ascii_case("tmpfs")),
            (None, Some(_)) => false,
        };
        let no_bind =
            o.iter().all(|o| !o.split(',').any(|x| matches!(x.trim().to_ascii_lowercase().as_str(), "bind" | "rbind")));
        allow(local && known && single && tmpfs_or_none && no_bind, DenyRule::BindMounts, || {
            format!("{at} (driver {driver:?} options reach host storage)")
        })
    }

    fn volume_create(&mut self, o: &Map<String, Value>) -> Verdict<()> {
        if g::field(o, "ClusterVolumeSpec", "")?.is_some() {
            return Err(deny(DenyRule::AdminOnly, "ClusterVolumeSpec: cluster volumes are reserved to administrators"));
        }
        let driver = g::string(o, "Driver", "")?;
        let opts = g::string_map(o, "DriverOpts", "")?;
        self.volume_driver(driver, &opts, "DriverOpts")
    }

    fn network_create(&mut self, o: &Map<String, Value>) -> Verdict<()> {
        let driver = g::string(o, "Driver", "")?;
        if !matches!(driver, "" | "bridge" | "overlay") {
            self.host_ns(&format!("Driver ({driver:?} attaches to host interfaces)"))?;
        }
        for (k, _) in g::string_map(o, "Options", "")? {
            if k == "com.docker.network.bridge.name" || k.eq_ignore_ascii_case("parent") {
                self.host_ns(&format!("Options[{k:?}] (a host interface)"))?;
            }
        }
        if g::boolean(o, "Ingress", "")? {
            return Err(deny(DenyRule::AdminOnly, "Ingress: the swarm ingress network is reserved to administrators"));
        }
        if g::field(o, "ConfigFrom", "")?.is_some() {
            return Err(deny(DenyRule::AdminOnly, "ConfigFrom: config-only networks are reserved to administrators"));
        }
        Ok(())
    }

    fn network_connect(&mut self, o: &Map<String, Value>) -> Verdict<()> {
        let c = g::string(o, "Container", "")?;
        self.refer(ResourceKind::Container, c, "Container".into());
        if let Some(ep) = g::object(o, "EndpointConfig", "")? {
            for (i, l) in g::strings(ep, "Links", "EndpointConfig")?.into_iter().enumerate() {
                self.link(l, idx("EndpointConfig.Links", i));
            }
        }
        Ok(())
    }
}

/// What a `HostConfig.Binds` entry mounts, read as Docker's Linux parser
/// does (`src:dst[:mode]`, or `dst[:mode]` for an anonymous volume); a
/// source that is not a valid volume name is a host path (and anything the
/// parser would not read, Windows paths included, counts as one).
#[derive(Debug, PartialEq, Eq)]
enum BindSource<'a> {
    Anonymous,
    Volume(&'a str),
    Host,
}

fn bind_source(spec: &str) -> BindSource<'_> {
    let parts: Vec<&str> = spec.split(':').collect();
    let src = match parts.as_slice() {
        [_] => return BindSource::Anonymous,
        [_, mode] if is_mount_mode(mode) => return BindSource::Anonymous,
        [src, _] | [src, _, _] => *src,
        _ => return BindSource::Host,
    };
    if is_volume_name(src) {
        BindSource::Volume(src)
    } else {
        BindSource::Host
    }
}

fn is_mount_mode(m: &str) -> bool {
    const MODES: &[&str] = &[
        "ro",
        "rw",
        "z",
        "Z",
        "nocopy",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "consistent",
        "cached",
        "delegated",
    ];
    !m.is_empty() && m.split(',').all(|p| MODES.contains(&p))
}

/// Docker's volume name pattern `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn is_volume_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `container:<id>` (Docker's spelling; other cases are treated alike).
fn container_mode(mode: &str) -> Option<&str> {
    let (k, id) = mode.split_once(':')?;
    k.eq_ignore_ascii_case("container").then_some(id)
}

/// `SecurityOpt` entries that only tighten: `no-new-privileges` (true).
fn harmless_security_opt(opt: &str) -> bool {
    let (k, v) = match opt.split_once(['=', ':']) {
        Some((k, v)) => (k, Some(v)),
        None => (opt, None),
    };
    k == "no-new-privileges" && v.is_none_or(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

impl Checker<'_> {
    /// A `ServiceSpec` (create and update alike: an update replaces the spec).
    fn service_spec(&mut self, o: &Map<String, Value>) -> Verdict<()> {
        if let Some(tt) = g::object(o, "TaskTemplate", "")? {
            self.task_template(tt, "TaskTemplate")?;
        }
        self.attachments(g::array(o, "Networks", "")?, "Networks")
    }

    fn attachments(&mut self, nets: &[Value], at: &str) -> Verdict<()> {
        for (i, n) in nets.iter().enumerate() {
            let here = idx(at, i);
            let n = n.as_object().ok_or_else(|| deny(DenyRule::BodyInvalid, format!("{here} must be an object")))?;
            let target = g::string(n, "Target", &here)?;
            self.network_target(target, &join(&here, "Target"))?;
        }
        Ok(())
    }

    fn task_template(&mut self, tt: &Map<String, Value>, at: &str) -> Verdict<()> {
        let runtime = g::string(tt, "Runtime", at)?;
        if !matches!(runtime, "" | "container") || g::field(tt, "PluginSpec", at)?.is_some() {
            return Err(deny(
                DenyRule::AdminOnly,
                format!("{}: plugin tasks are reserved to administrators", join(at, "Runtime")),
            ));
        }
        if g::field(tt, "NetworkAttachmentSpec", at)?.is_some() {
            return Err(deny(DenyRule::AdminOnly, join(at, "NetworkAttachmentSpec")));
        }
        self.attachments(g::array(tt, "Networks", at)?, &join(at, "Networks"))?;
        if let Some(res) = g::object(tt, "Resources", at)? {
            let res_at = join(at, "Resources");
            for part in ["Limits", "Reservations"] {
                if let Some(p) = g::object(res, part, &res_at)? {
                    let here = join(&res_at, part);
                    let used = !g::array(p, "GenericResources", &here)?.is_empty();
                    allow(!used || self.s.allow_device_mapping_for_regular_users, DenyRule::DeviceMapping, || {
                        join(&here, "GenericResources")
                    })?;
                }
            }
        }
        let Some(cs) = g::object(tt, "ContainerSpec", at)? else { return Ok(()) };
        let at = &join(at, "ContainerSpec");
        self.mounts(g::array(cs, "Mounts", at)?, &join(at, "Mounts"))?;
        let caps = !g::strings(cs, "CapabilityAdd", at)?.is_empty();
        allow(!caps || self.s.allow_container_capabilities_for_regular_users, DenyRule::Capabilities, || {
            join(at, "CapabilityAdd")
        })?;
        let sysctls = !g::string_map(cs, "Sysctls", at)?.is_empty();
        allow(!sysctls || self.s.allow_sysctl_setting_for_regular_users, DenyRule::Sysctls, || join(at, "Sysctls"))?;
        let iso = g::string(cs, "Isolation", at)?;
        allow(
            matches!(iso, "" | "default") || self.s.allow_security_options_for_regular_users,
            DenyRule::SecurityOptions,
            || join(at, "Isolation"),
        )?;
        if let Some(p) = g::object(cs, "Privileges", at)? {
            self.privileges(p, &join(at, "Privileges"))?;
        }
        for (list, id_field, name_field, kind) in [
            ("Secrets", "SecretID", "SecretName", ResourceKind::Secret),
            ("Configs", "ConfigID", "ConfigName", ResourceKind::Config),
        ] {
            for (i, r) in g::array(cs, list, at)?.iter().enumerate() {
                let here = idx(&join(at, list), i);
                let r =
                    r.as_object().ok_or_else(|| deny(DenyRule::BodyInvalid, format!("{here} must be an object")))?;
                let id = g::string(r, id_field, &here)?;
                let id = if id.is_empty() { g::string(r, name_field, &here)? } else { id };
                self.refer(kind, id, here);
            }
        }
        Ok(())
    }

    /// `ContainerSpec.Privileges`: anything but the defaults loosens the
    /// container's confinement (or, for `CredentialSpec.Config`, reads a
    /// swarm config).
    fn privileges(&mut self, p: &Map<String, Value>, at: &str) -> Verdict<()> {
        let ok = self.s.allow_security_options_for_regular_users;
        let check = |used: bool, what: String| allow(!used || ok, DenyRule::SecurityOptions, || what);
        if let Some(cred) = g::object(p, "CredentialSpec", at)? {
            check(true, join(at, "CredentialSpec"))?;
            let c = g::string(cred, "Config", &join(at, "CredentialSpec"))?;
            if !c.is_empty() {
                self.refer(ResourceKind::Config, c, join(at, "CredentialSpec.Config"));
            }
        }
        if let Some(se) = g::object(p, "SELinuxContext", at)? {
            let here = join(at, "SELinuxContext");
            let mut used = g::boolean(se, "Disable", &here)?;
            for f in ["User", "Role", "Type", "Level"] {
                used |= !g::string(se, f, &here)?.is_empty();
            }
            check(used, here)?;
        }
        for name in ["Seccomp", "AppArmor"] {
            if let Some(x) = g::object(p, name, at)? {
                let here = join(at, name);
                let mode = g::string(x, "Mode", &here)?;
                check(!matches!(mode, "" | "default") || g::field(x, "Profile", &here)?.is_some(), here)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
