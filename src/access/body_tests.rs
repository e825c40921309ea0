#![allow(clippy::needless_pass_by_value)] // table-driven test helpers take owned cases

use super::*;
use serde_json::json;

fn secure() -> SecuritySettings {
    SecuritySettings::default()
}

fn check(kind: BodyKind, v: Value) -> Verdict<Findings> {
    inspect(kind, &serde_json::to_vec(&v).unwrap(), &secure())
}

fn rule(kind: BodyKind, v: Value) -> DenyRule {
    check(kind, v.clone()).expect_err(&v.to_string()).rule
}

fn create(hc: Value) -> DenyRule {
    rule(BodyKind::ContainerCreate, json!({"Image": "busybox", "HostConfig": hc}))
}

#[test]
fn plain_bodies_pass_and_report_references() {
    let f = check(
        BodyKind::ContainerCreate,
        json!({"Image": "busybox", "Cmd": ["sh"], "Labels": {"a": "b"},
               "HostConfig": {"Binds": ["data:/data:ro", "/anon", "/x:rw"], "NetworkMode": "mynet",
                              "VolumesFrom": ["other:ro"], "Links": ["/db:db"], "CapDrop": ["ALL"],
                              "SecurityOpt": ["no-new-privileges", "no-new-privileges=true"],
                              "Mounts": [{"Type": "tmpfs", "Target": "/t"}, {"Type": "volume", "Source": "v2", "Target": "/v"}],
                              "Memory": 1000000, "RestartPolicy": {"Name": "always"}},
               "NetworkingConfig": {"EndpointsConfig": {"front": {"Links": ["web:w"]}}}}),
    )
    .unwrap();
    let refs: Vec<(ResourceKind, &str)> = f.references.iter().map(|r| (r.kind, r.id.as_str())).collect();
    for want in [
        (ResourceKind::Volume, "data"),
        (ResourceKind::Volume, "v2"),
        (ResourceKind::Container, "other"),
        (ResourceKind::Container, "db"),
        (ResourceKind::Container, "web"),
        (ResourceKind::Network, "mynet"),
        (ResourceKind::Network, "front"),
    ] {
        assert!(refs.contains(&want), "{want:?} missing from {refs:?}");
    }
    assert_eq!(refs.len(), 7, "{refs:?}");
    assert!(f.labels.is_empty());
}

#[test]
fn privileged_and_host_binds_are_refused() {
    // The issue's example: bob's privileged container with `/` mounted.
    assert_eq!(create(json!({"Privileged": true, "Binds": ["/:/host"]})), DenyRule::Privileged);
    assert_eq!(create(json!({"Binds": ["/:/host"]})), DenyRule::BindMounts);
    assert_eq!(create(json!({"Binds": ["/var/run/docker.sock:/s:ro"]})), DenyRule::BindMounts);
    assert_eq!(create(json!({"Binds": ["C:\\:C:\\host"]})), DenyRule::BindMounts);
    assert_eq!(create(json!({"Binds": [":/x"]})), DenyRule::BindMounts);
    assert_eq!(create(json!({"Binds": ["./rel:/x"]})), DenyRule::BindMounts);
}

/// CVE-2026-44850: a bind mount through `HostConfig.Mounts`.
#[test]
fn cve_2026_44850_mounts_binds_are_refused() {
    assert_eq!(create(json!({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/host"}]})), DenyRule::BindMounts);
    // Case variants of the type, and of every key on the way.
    assert_eq!(create(json!({"Mounts": [{"Type": "Bind", "Source": "/", "Target": "/h"}]})), DenyRule::BindMounts);
    assert_eq!(
        rule(
            BodyKind::ContainerCreate,
            json!({"hostconfig": {"mounts": [{"type": "bind", "source": "/", "target": "/h"}]}})
        ),
        DenyRule::BindMounts
    );
    assert_eq!(
        rule(BodyKind::ContainerCreate, json!({"HOSTCONFIG": {"MOUNTS": [{"TYPE": "bind", "SOURCE": "/"}]}})),
        DenyRule::BindMounts
    );
    // Go's folding: `ſ` is `s`.
    assert_eq!(
        rule(BodyKind::ContainerCreate, json!({"HoſtConfig": {"Mountſ": [{"Type": "bind", "Source": "/"}]}})),
        DenyRule::BindMounts
    );
    assert_eq!(
        create(json!({"Mounts": [{"Type": "npipe", "Source": "\\\\.\\pipe\\docker_engine"}]})),
        DenyRule::BindMounts
    );
    // Local-driver options that bind a host path.
    let vol = |opts: Value| {
        create(json!({"Mounts": [{"Type": "volume", "Target": "/h",
                                   "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": opts}}}]}))
    };
    assert_eq!(vol(json!({"type": "none", "o": "bind", "device": "/"})), DenyRule::BindMounts);
    assert_eq!(vol(json!({"device": "/dev/sda1", "type": "ext4"})), DenyRule::BindMounts);
    assert!(check(
        BodyKind::ContainerCreate,
        json!({"HostConfig": {"Mounts": [{"Type": "volume", "Target": "/t",
                "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs", "o": "size=10m"}}}}]}})
    )
    .is_ok());
    // Unknown and cluster mount types are for admins.
    assert_eq!(create(json!({"Mounts": [{"Type": "cluster", "Source": "csi"}]})), DenyRule::AdminOnly);
    assert_eq!(create(json!({"Mounts": [{"Source": "/"}]})), DenyRule::AdminOnly);
}

#[test]
fn duplicate_and_case_variant_keys_are_refused() {
    let raw = |b: &str| inspect(BodyKind::ContainerCreate, b.as_bytes(), &secure()).unwrap_err().rule;
    assert_eq!(raw(r#"{"HostConfig":{"Privileged":false,"Privileged":true}}"#), DenyRule::BodyAmbiguous);
    assert_eq!(raw(r#"{"HostConfig":{"Privileged":false,"privileged":true}}"#), DenyRule::BodyAmbiguous);
    assert_eq!(raw(r#"{"HostConfig":{},"hostConfig":{"Privileged":true}}"#), DenyRule::BodyAmbiguous);
    assert_eq!(raw(r#"{"HostConfig":{"Binds":[],"BINDS":["/:/h"]}}"#), DenyRule::BodyAmbiguous);
    assert_eq!(
        raw(r#"{"HostConfig":{"Mounts":[{"Type":"volume","type":"bind","Source":"/"}]}}"#),
        DenyRule::BodyAmbiguous
    );
    assert_eq!(raw(r#"{"HostConfig":{"Prıvıleged":true}}"#), DenyRule::Privileged, "dotless i folds in Go");
    assert_eq!(raw(r#"{"HostConfig":{"Privileged":"yes"}}"#), DenyRule::BodyInvalid);
    assert_eq!(raw(r#"[{"HostConfig":{}}]"#), DenyRule::BodyInvalid);
    assert_eq!(raw(r#"{"HostConfig":{"Privileged":true}"#), DenyRule::BodyInvalid);
}

#[test]
fn host_namespaces_are_refused() {
    for (k, v) in [
        ("NetworkMode", "host"),
        ("NetworkMode", "HOST"),
        ("PidMode", "host"),
        ("IpcMode", "host"),
        ("UTSMode", "host"),
        ("UsernsMode", "host"),
        ("CgroupnsMode", "host"),
    ] {
        assert_eq!(create(json!({k: v})), DenyRule::HostNamespace, "{k}={v}");
    }
    assert_eq!(
        rule(BodyKind::ContainerCreate, json!({"NetworkingConfig": {"EndpointsConfig": {"host": {}}}})),
        DenyRule::HostNamespace
    );
    assert_eq!(create(json!({"PidMode": "weird"})), DenyRule::BodyInvalid);
    let f = check(
        BodyKind::ContainerCreate,
        json!({"HostConfig": {"PidMode": "container:victim", "NetworkMode": "container:v2"}}),
    )
    .unwrap();
    assert_eq!(f.references.len(), 2);
    assert!(f.references.iter().all(|r| r.kind == ResourceKind::Container));
}

#[test]
fn devices_capabilities_sysctls_and_security_options_are_refused() {
    assert_eq!(create(json!({"Devices": [{"PathOnHost": "/dev/sda"}]})), DenyRule::DeviceMapping);
    assert_eq!(create(json!({"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]})), DenyRule::DeviceMapping);
    assert_eq!(create(json!({"DeviceCgroupRules": ["a *:* rwm"]})), DenyRule::DeviceMapping);
    assert_eq!(create(json!({"CapAdd": ["SYS_ADMIN"]})), DenyRule::Capabilities);
    assert_eq!(create(json!({"Capabilities": ["CAP_SYS_ADMIN"]})), DenyRule::Capabilities);
    assert_eq!(create(json!({"Sysctls": {"kernel.core_pattern": "|/x"}})), DenyRule::Sysctls);
    for opt in [
        "seccomp=unconfined",
        "seccomp:unconfined",
        "apparmor=unconfined",
        "label=disable",
        "label:type:spc_t",
        "systempaths=unconfined",
        "seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}",
        "no-new-privileges=false",
        "writable-cgroups=true",
    ] {
        assert_eq!(create(json!({"SecurityOpt": [opt]})), DenyRule::SecurityOptions, "{opt}");
    }
    assert_eq!(create(json!({"MaskedPaths": []})), DenyRule::SecurityOptions);
    assert_eq!(create(json!({"ReadonlyPaths": []})), DenyRule::SecurityOptions);
    assert_eq!(create(json!({"Runtime": "sysbox-runc"})), DenyRule::SecurityOptions);
    assert_eq!(create(json!({"Annotations": {"run.oci.hooks": "x"}})), DenyRule::SecurityOptions);
    assert!(check(BodyKind::ContainerCreate, json!({"HostConfig": {"Runtime": "runc", "MaskedPaths": null}})).is_ok());
}

#[test]
fn settings_allow_what_they_name() {
    let all = SecuritySettings::portainer_defaults();
    let body = json!({"HostConfig": {"Privileged": true, "Binds": ["/:/h"], "PidMode": "host", "CapAdd": ["ALL"],
                                     "Sysctls": {"a": "b"}, "Devices": [{}], "SecurityOpt": ["seccomp=unconfined"],
                                     "Mounts": [{"Type": "bind", "Source": "/"}]}});
    assert!(inspect(BodyKind::ContainerCreate, &serde_json::to_vec(&body).unwrap(), &all).is_ok());
    let mut s = secure();
    s.allow_bind_mounts_for_regular_users = true;
    let b = serde_json::to_vec(&json!({"HostConfig": {"Binds": ["/srv:/srv"], "Privileged": true}})).unwrap();
    assert_eq!(inspect(BodyKind::ContainerCreate, &b, &s).unwrap_err().rule, DenyRule::Privileged);
}

#[test]
fn container_update_and_exec_are_checked() {
    assert_eq!(
        rule(BodyKind::ContainerUpdate, json!({"Devices": [{"PathOnHost": "/dev/mem"}]})),
        DenyRule::DeviceMapping
    );
    assert!(
        check(BodyKind::ContainerUpdate, json!({"Memory": 1, "CpuShares": 2, "RestartPolicy": {"Name": "no"}})).is_ok()
    );
    assert_eq!(rule(BodyKind::ExecCreate, json!({"Cmd": ["sh"], "Privileged": true})), DenyRule::Privileged);
    assert_eq!(rule(BodyKind::ExecCreate, json!({"Cmd": ["sh"], "privileged": true})), DenyRule::Privileged);
    assert!(check(BodyKind::ExecCreate, json!({"Cmd": ["sh"], "User": "root"})).is_ok());
}

/// CVE-2026-44849: service create and update skipped the checks.
#[test]
fn cve_2026_44849_services_are_checked_on_create_and_update() {
    for kind in [BodyKind::ServiceCreate, BodyKind::ServiceUpdate] {
        let spec = |cs: Value| json!({"Name": "s", "TaskTemplate": {"ContainerSpec": cs}});
        let r = |cs: Value| rule(kind, spec(cs));
        assert_eq!(
            r(json!({"Image": "x", "Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]})),
            DenyRule::BindMounts
        );
        assert_eq!(r(json!({"Image": "x", "CapabilityAdd": ["CAP_SYS_ADMIN"]})), DenyRule::Capabilities);
        assert_eq!(r(json!({"Image": "x", "Sysctls": {"net.ipv4.ip_forward": "1"}})), DenyRule::Sysctls);
        assert_eq!(
            r(json!({"Image": "x", "Privileges": {"Seccomp": {"Mode": "unconfined"}}})),
            DenyRule::SecurityOptions
        );
        assert_eq!(
            r(json!({"Image": "x", "Privileges": {"AppArmor": {"Mode": "disabled"}}})),
            DenyRule::SecurityOptions
        );
        assert_eq!(
            r(json!({"Image": "x", "Privileges": {"SELinuxContext": {"Disable": true}}})),
            DenyRule::SecurityOptions
        );
        assert_eq!(
            r(json!({"Image": "x", "Mounts": [{"Type": "volume", "Target": "/h",
                      "VolumeOptions": {"DriverConfig": {"Options": {"o": "bind", "device": "/etc", "type": "none"}}}}]})),
            DenyRule::BindMounts
        );
        assert_eq!(
            rule(kind, json!({"TaskTemplate": {"ContainerSpec": {"Image": "x"}, "Networks": [{"Target": "host"}]}})),
            DenyRule::HostNamespace
        );
        assert_eq!(rule(kind, json!({"Networks": [{"Target": "host"}]})), DenyRule::HostNamespace);
        assert_eq!(
            rule(kind, json!({"TaskTemplate": {"Runtime": "plugin", "PluginSpec": {"Name": "x"}}})),
            DenyRule::AdminOnly
        );
        assert_eq!(
            rule(
                kind,
                json!({"TaskTemplate": {"Resources": {"Reservations": {"GenericResources": [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": 1}}]}}}})
            ),
            DenyRule::DeviceMapping
        );
        assert_eq!(
            rule(kind, json!({"taskTemplate": {"containerSpec": {"mounts": [{"type": "bind", "source": "/"}]}}})),
            DenyRule::BindMounts
        );
    }
    let f = check(
        BodyKind::ServiceCreate,
        json!({"Name": "s", "Labels": {"io.portainer.accesscontrol.public": ""},
               "TaskTemplate": {"ContainerSpec": {"Image": "x", "Secrets": [{"SecretID": "sec1", "File": {"Name": "a"}}],
                                                  "Configs": [{"ConfigID": "cfg1"}]},
                                "Networks": [{"Target": "overlay1"}]}}),
    )
    .unwrap();
    let refs: Vec<(ResourceKind, &str)> = f.references.iter().map(|r| (r.kind, r.id.as_str())).collect();
    assert_eq!(
        refs,
        [(ResourceKind::Network, "overlay1"), (ResourceKind::Secret, "sec1"), (ResourceKind::Config, "cfg1")]
    );
    assert!(f.labels.public);
}

/// CVE-2026-44849 (second half): a volume created with the local driver's
/// `o=bind` is a bind mount by another name.
#[test]
fn cve_2026_44849_volume_bind_options_are_refused() {
    let v = |d: Value| rule(BodyKind::VolumeCreate, d);
    assert_eq!(
        v(json!({"Name": "x", "Driver": "local", "DriverOpts": {"type": "none", "o": "bind", "device": "/"}})),
        DenyRule::BindMounts
    );
    assert_eq!(
        v(json!({"Name": "x", "DriverOpts": {"type": "none", "o": "rbind,ro", "device": "/etc"}})),
        DenyRule::BindMounts
    );
    assert_eq!(v(json!({"Name": "x", "DriverOpts": {"o": "BIND", "device": "/etc"}})), DenyRule::BindMounts);
    assert_eq!(
        v(json!({"Name": "x", "DriverOpts": {"type": "nfs", "o": "addr=10.0.0.1", "device": ":/export"}})),
        DenyRule::BindMounts
    );
    assert_eq!(v(json!({"Name": "x", "DriverOpts": {"device": "/dev/sda1"}})), DenyRule::BindMounts);
    assert_eq!(
        v(json!({"Name": "x", "DriverOpts": {"Type": "none", "type": "tmpfs", "device": "/"}})),
        DenyRule::BindMounts
    );
    assert_eq!(
        v(json!({"Name": "x", "Driver": "some-plugin", "DriverOpts": {"mountpoint": "/"}})),
        DenyRule::BindMounts
    );
    assert_eq!(v(json!({"Name": "x", "driveropts": {"o": "bind", "device": "/"}})), DenyRule::BindMounts);
    assert_eq!(v(json!({"Name": "x", "ClusterVolumeSpec": {}})), DenyRule::AdminOnly);
    assert!(check(
        BodyKind::VolumeCreate,
        json!({"Name": "x", "DriverOpts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}})
    )
    .is_ok());
    assert!(check(BodyKind::VolumeCreate, json!({"Name": "x", "Driver": "local", "Labels": {"a": "b"}})).is_ok());
}

#[test]
fn networks_are_checked() {
    assert_eq!(
        rule(BodyKind::NetworkCreate, json!({"Name": "n", "Driver": "macvlan", "Options": {"parent": "eth0"}})),
        DenyRule::HostNamespace
    );
    assert_eq!(
        rule(BodyKind::NetworkCreate, json!({"Name": "n", "Options": {"com.docker.network.bridge.name": "br0"}})),
        DenyRule::HostNamespace
    );
    assert_eq!(
        rule(BodyKind::NetworkCreate, json!({"Name": "n", "Driver": "overlay", "Ingress": true})),
        DenyRule::AdminOnly
    );
    assert!(check(BodyKind::NetworkCreate, json!({"Name": "n", "Driver": "bridge", "Internal": true})).is_ok());
    let f =
        check(BodyKind::NetworkConnect, json!({"Container": "victim", "EndpointConfig": {"Links": ["x:y"]}})).unwrap();
    assert_eq!(f.references.len(), 2);
    assert_eq!(
        f.references[0],
        Reference { kind: ResourceKind::Container, id: "victim".into(), at: "Container".into() }
    );
}

#[test]
fn bind_specs_read_like_dockers_parser() {
    assert_eq!(bind_source("/data"), BindSource::Anonymous);
    assert_eq!(bind_source("/data:ro"), BindSource::Anonymous);
    assert_eq!(bind_source("vol:/data"), BindSource::Volume("vol"));
    assert_eq!(bind_source("vol:/data:ro,z"), BindSource::Volume("vol"));
    assert_eq!(bind_source("/h:/data"), BindSource::Host);
    assert_eq!(bind_source("a:/b:c:d"), BindSource::Host);
    assert_eq!(bind_source("vv:/data:unknownmode"), BindSource::Volume("vv"));
    assert_eq!(bind_source("v:/data"), BindSource::Host, "not a valid volume name");
    assert_eq!(bind_source("~/x:/data"), BindSource::Host);
}

#[test]
fn access_labels_are_read_from_create_bodies() {
    let f = check(
        BodyKind::ContainerCreate,
        json!({"Image": "x", "Labels": {"io.portainer.accesscontrol.users": " bob, alice ,bob", "io.portainer.accesscontrol.teams": ""}}),
    )
    .unwrap();
    assert_eq!(f.labels.users, Some(vec!["bob".to_string(), "alice".to_string()]));
    assert_eq!(f.labels.teams, Some(vec![]));
    assert!(!f.labels.public);
    let f = check(BodyKind::ExecCreate, json!({"Labels": {"io.portainer.accesscontrol.public": "1"}})).unwrap();
    assert!(f.labels.is_empty(), "only creates carry labels");
}

#[test]
fn the_default_network_alias_is_no_reference() {
    // What `docker run` (20.10) sends without `--network`.
    let f = check(
        BodyKind::ContainerCreate,
        json!({"Image": "busybox", "HostConfig": {"NetworkMode": "default", "MaskedPaths": null, "ReadonlyPaths": null},
               "NetworkingConfig": {"EndpointsConfig": {"default": {}}}}),
    )
    .unwrap();
    assert!(f.references.is_empty(), "{:?}", f.references);
}
