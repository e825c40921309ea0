//! Canned Engine answers, shaped after what Docker 20.10 (API 1.41) really
//! returns so that clients which parse them strictly (the docker CLI,
//! docker-py, Portainer's own code) accept them. Serialized once and handed
//! out as shared `Bytes` so that benchmarks measure Berth, not the mock.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{API_VERSION, ENGINE_VERSION};

/// Marks every canned answer, so a test can tell the mock from a real engine
/// that might be listening on the same kind of address.
pub const PLATFORM_NAME: &str = "berth-mock-docker";
pub const HOST_NAME: &str = "berth-mock";

fn cached(cell: &'static OnceLock<Bytes>, make: fn() -> Value) -> Bytes {
    cell.get_or_init(|| Bytes::from(make().to_string())).clone()
}

pub fn version() -> Bytes {
    static C: OnceLock<Bytes> = OnceLock::new();
    cached(&C, || {
        let details = json!({
            "ApiVersion": API_VERSION, "Arch": "amd64",
            "BuildTime": "2023-04-04T00:00:00.000000000+00:00", "Experimental": "false",
            "GitCommit": "5d6db84", "GoVersion": "go1.19.8", "KernelVersion": "6.1.0-mock",
            "MinAPIVersion": "1.12", "Os": "linux"
        });
        json!({
            "Platform": {"Name": PLATFORM_NAME},
            "Components": [
                {"Name": "Engine", "Version": ENGINE_VERSION, "Details": details},
                {"Name": "containerd", "Version": "1.6.20", "Details": {"GitCommit": "mock"}},
                {"Name": "runc", "Version": "1.1.5", "Details": {"GitCommit": "mock"}}
            ],
            "Version": ENGINE_VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": "1.12",
            "GitCommit": "5d6db84", "GoVersion": "go1.19.8", "Os": "linux", "Arch": "amd64",
            "KernelVersion": "6.1.0-mock", "BuildTime": "2023-04-04T00:00:00.000000000+00:00"
        })
    })
}

fn info_value(swarm: bool) -> Value {
    let swarm_info = if swarm {
        json!({
            "NodeID": "mocknode0000000000000001", "NodeAddr": "127.0.0.1",
            "LocalNodeState": "active", "ControlAvailable": true, "Error": "",
            "RemoteManagers": [{"NodeID": "mocknode0000000000000001", "Addr": "127.0.0.1:2377"}],
            "Nodes": 1, "Managers": 1,
            "Cluster": {"ID": "mockswarm00000000000000001", "Version": {"Index": 10}}
        })
    } else {
        json!({
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
            "ControlAvailable": false, "Error": "", "RemoteManagers": null
        })
    };
    let mut info = json!({
        "ID": "MOCK:BERT:HDOC:KER0:0000:0000:0000:0000:0000:0000:0000:0001",
        "Containers": 3, "ContainersRunning": 2, "ContainersPaused": 0, "ContainersStopped": 1,
        "Images": 3, "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {
            "Volume": ["local"], "Network": ["bridge", "host", "null", "overlay"],
            "Authorization": null, "Log": ["json-file", "local"]
        },
        "MemoryLimit": true, "SwapLimit": true, "KernelMemory": true, "KernelMemoryTCP": true,
        "CpuCfsPeriod": true, "CpuCfsQuota": true, "CPUShares": true, "CPUSet": true,
        "PidsLimit": true, "IPv4Forwarding": true, "BridgeNfIptables": true,
        "BridgeNfIp6tables": true, "Debug": false, "NFd": 24, "OomKillDisable": true,
        "NGoroutines": 39, "SystemTime": "2024-01-01T00:00:00.000000000Z"
    });
    // Two literals because one this size exceeds json!'s macro recursion limit.
    let rest = json!({
        "LoggingDriver": "json-file", "CgroupDriver": "systemd", "CgroupVersion": "2",
        "NEventsListener": 0, "KernelVersion": "6.1.0-mock",
        "OperatingSystem": PLATFORM_NAME, "OSVersion": "1", "OSType": "linux",
        "Architecture": "x86_64", "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []
        },
        "NCPU": 2, "MemTotal": 25_276_502_016u64, "GenericResources": null,
        "DockerRootDir": "/var/lib/docker", "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": HOST_NAME, "Labels": [], "ExperimentalBuild": false,
        "ServerVersion": ENGINE_VERSION,
        "Runtimes": {"runc": {"path": "runc"}}, "DefaultRuntime": "runc",
        "Swarm": swarm_info, "LiveRestoreEnabled": false, "Isolation": "",
        "InitBinary": "docker-init",
        "ContainerdCommit": {"ID": "mock", "Expected": "mock"},
        "RuncCommit": {"ID": "mock", "Expected": "mock"},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"],
        "Warnings": null
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut info, rest) {
        a.extend(b);
    }
    info
}

pub fn info(swarm: bool) -> Bytes {
    static PLAIN: OnceLock<Bytes> = OnceLock::new();
    static SWARM: OnceLock<Bytes> = OnceLock::new();
    if swarm {
        cached(&SWARM, || info_value(true))
    } else {
        cached(&PLAIN, || info_value(false))
    }
}

fn container(id: &str, name: &str, image: &str, state: &str, status: &str, ip: &str) -> Value {
    let net_id = "c2968924564c99e0d51798c6831f86989e612bd4c51ddd114ec62929530c71b1";
    let running = state == "running";
    json!({
        "Id": id,
        "Names": [format!("/{name}")],
        "Image": image,
        "ImageID": "sha256:9f2a1c0d8e7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877",
        "Command": "/bin/sh -c 'exec httpd -f -p 8080'",
        "Created": 1_700_000_000u64,
        "Ports": if running {
            json!([{"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 18080, "Type": "tcp"}])
        } else {
            json!([])
        },
        "Labels": {"com.example.app": name, "org.berth.mock": "true"},
        "State": state,
        "Status": status,
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {"Networks": {"bridge": {
            "IPAMConfig": null, "Links": null, "Aliases": null,
            "NetworkID": net_id,
            "EndpointID": if running { "3b4f0e2a9c1d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f" } else { "" },
            "Gateway": if running { "172.17.0.1" } else { "" },
            "IPAddress": ip, "IPPrefixLen": if running { 16 } else { 0 },
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": "", "DriverOpts": null
        }}},
        "Mounts": []
    })
}

/// About 2 KB, like a small real host: big enough that a proxy which copies
/// or re-parses bodies shows up in a benchmark.
pub fn containers() -> Bytes {
    static C: OnceLock<Bytes> = OnceLock::new();
    cached(&C, || {
        json!([
            container(
                "8dfafdbc3a40c5c3c4b2a0a1f8e9d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180",
                "berth-mock-web",
                "berth-test/busybox:latest",
                "running",
                "Up 2 hours",
                "172.17.0.2"
            ),
            container(
                "1c7e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f50",
                "berth-mock-worker",
                "berth-test/busybox:latest",
                "running",
                "Up 5 minutes",
                "172.17.0.3"
            ),
            container(
                "f00dbabe0123456789abcdef0123456789abcdef0123456789abcdef01234567",
                "berth-mock-job",
                "berth-test/busybox:latest",
                "exited",
                "Exited (0) 3 days ago",
                ""
            ),
        ])
    })
}

pub fn images() -> Bytes {
    static C: OnceLock<Bytes> = OnceLock::new();
    cached(&C, || {
        json!([{
            "Containers": -1, "Created": 1_700_000_000u64,
            "Id": "sha256:9f2a1c0d8e7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877",
            "Labels": null, "ParentId": "", "RepoDigests": null,
            "RepoTags": ["berth-test/busybox:latest"],
            "SharedSize": -1, "Size": 2_170_256, "VirtualSize": 2_170_256
        }])
    })
}

pub fn volumes() -> Bytes {
    static C: OnceLock<Bytes> = OnceLock::new();
    cached(&C, || {
        json!({
            "Volumes": [{
                "CreatedAt": "2024-01-01T00:00:00Z", "Driver": "local", "Labels": null,
                "Mountpoint": "/var/lib/docker/volumes/berth-mock-data/_data",
                "Name": "berth-mock-data", "Options": null, "Scope": "local"
            }],
            "Warnings": null
        })
    })
}

fn network(name: &str, id: &str, driver: &str, subnet: Option<&str>) -> Value {
    json!({
        "Name": name, "Id": id, "Created": "2024-01-01T00:00:00.000000000Z",
        "Scope": "local", "Driver": driver, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null,
                 "Config": subnet.map(|s| json!([{"Subnet": s}])).unwrap_or(json!([]))},
        "Internal": false, "Attachable": false, "Ingress": false,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": {}, "Options": {}, "Labels": {}
    })
}

pub fn networks() -> Bytes {
    static C: OnceLock<Bytes> = OnceLock::new();
    cached(&C, || {
        json!([
            network(
                "bridge",
                "c2968924564c99e0d51798c6831f86989e612bd4c51ddd114ec62929530c71b1",
                "bridge",
                Some("172.17.0.0/16")
            ),
            network("host", "a7a274163d556fdd25db563ab538e6a1c854926636666bc88eef846d8c7c0901", "host", None),
            network("none", "dcc27dc9ffcf49658055faac95190f4854c61e81ed7ac1b3fb7e7b0ce4879909", "null", None),
        ])
    })
}

pub fn swarm() -> Bytes {
    static C: OnceLock<Bytes> = OnceLock::new();
    cached(&C, || {
        json!({
            "ID": "mockswarm00000000000000001",
            "Version": {"Index": 10},
            "CreatedAt": "2024-01-01T00:00:00.000000000Z",
            "UpdatedAt": "2024-01-01T00:00:00.000000000Z",
            "Spec": {
                "Name": "default", "Labels": {},
                "Orchestration": {"TaskHistoryRetentionLimit": 5},
                "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0,
                         "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1},
                "Dispatcher": {"HeartbeatPeriod": 5_000_000_000u64},
                "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000u64},
                "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": false}
            },
            "TLSInfo": {"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""},
            "RootRotationInProgress": false, "DefaultAddrPool": ["10.0.0.0/8"],
            "SubnetSize": 24, "DataPathPort": 4789,
            "JoinTokens": {
                "Worker": "SWMTKN-1-mockworkertoken000000000000000000000000000000000-0000000000000000000000001",
                "Manager": "SWMTKN-1-mockmanagertoken00000000000000000000000000000000-0000000000000000000000002"
            }
        })
    })
}

/// Docker's wording, so that code which recognises "not a swarm manager"
/// by message (as Portainer does) behaves the same against the mock.
pub const NOT_SWARM_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
