//! `/api/endpoints`, `/api/endpoint_groups`, `/api/tags` and the health
//! checker, against the real daemon binary. The seeds' HTTPie walkthroughs
//! run against the real Docker engine; everything else uses the mock engine
//! so it runs anywhere.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_testkit::endpoints::*;
use berth_testkit::harness::*;
use berth_testkit::{FailMode, MockDocker};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn mock_in(dir: &std::path::Path, name: &str) -> MockDocker {
    MockDocker::start_unix(dir.join(name)).await.expect("start mock engine")
}

/// The fields every endpoint answer carries, checked against the seeds'
/// sample responses and the reference's `{}`/`[]` rules.
fn assert_endpoint_shape(v: &Value, name: &str, url: &str) {
    assert!(v["Id"].as_u64().is_some_and(|i| i > 0), "{v}");
    assert_eq!(v["Name"], name, "{v}");
    assert_eq!(v["Type"], 1, "{v}");
    assert_eq!(v["URL"], url, "{v}");
    assert_eq!(v["PublicURL"], "", "{v}");
    assert_eq!(v["GroupId"], 1, "{v}");
    assert_eq!(v["Status"], 1, "{v}");
    assert_eq!(v["TagIds"], json!([]), "{v}");
    assert_eq!(v["UserAccessPolicies"], json!({}), "{v}");
    assert_eq!(v["TeamAccessPolicies"], json!({}), "{v}");
    assert_eq!(v["AuthorizedUsers"], json!([]), "{v}");
    assert_eq!(v["AuthorizedTeams"], json!([]), "{v}");
    assert_eq!(v["Extensions"], json!([]), "{v}");
    assert_eq!(v["Gpus"], json!([]), "{v}");
    assert_eq!(v["ComposeSyntaxMaxVersion"], "3.9", "{v}");
    assert_eq!(v["ContainerEngine"], "docker", "{v}");
    assert_eq!(v["EdgeCheckinInterval"], 0, "{v}");
    assert_eq!(v["Agent"], json!({"Version": ""}), "{v}");
    assert_eq!(v["SecuritySettings"]["allowVolumeBrowserForRegularUsers"], false, "{v}");
    // Berth's secure default: standard users get nothing until an admin allows it.
    assert_eq!(v["SecuritySettings"]["allowBindMountsForRegularUsers"], false, "{v}");
    assert!(v["Snapshots"].is_array(), "{v}");
}

fn seed_auth(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

// ------------------------------------------------------------------ seeds

#[tokio::test]
async fn seed_local_socket_endpoints_work_with_httpie() {
    if !require_docker() || !require_httpie() {
        return;
    }
    let d = Daemon::start().await;
    let token = d.admin_token().await;
    let base = format!(":{}/api/endpoints", d.port());
    let variants: [&[&str]; 3] = [
        &["Name=test-local", "EndpointType=1"],
        &["Name=test-local-2", "EndpointCreationType=1"],
        &["Name=test-local-3", "URL=unix:///var/run/docker.sock"],
    ];
    let mut ids = Vec::new();
    for fields in variants {
        let mut args = vec!["--form".to_owned(), "POST".to_owned(), base.clone(), seed_auth(&token)];
        args.extend(fields.iter().map(|s| s.to_string()));
        let (code, v) = httpie(args).await;
        assert_eq!(code, 0, "{fields:?}: {v}");
        let name = fields[0].trim_start_matches("Name=");
        assert_endpoint_shape(&v, name, "unix:///var/run/docker.sock");
        assert_eq!(v["TLSConfig"], json!({"TLS": false, "TLSSkipVerify": false}), "{v}");
        let snap = &v["Snapshots"][0];
        assert!(snap["DockerVersion"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
        assert!(snap["TotalCPU"].as_i64().is_some_and(|c| c > 0), "{v}");
        ids.push(v["Id"].as_u64().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids are increasing: {ids:?}");

    // The proxy uses the registered pool.
    let (s, v) = d.get_json(&format!("/api/endpoints/{}/docker/version", ids[0]), Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["ApiVersion"].is_string(), "{v}");
}

#[tokio::test]
async fn seed_tcp_endpoints_work_with_httpie() {
    if !require_docker() || !require_httpie() {
        return;
    }
    let (port, accepted) = tcp_relay(DOCKER_SOCKET.into()).await;
    let d = Daemon::start().await;
    let token = d.admin_token().await;
    let url = format!("tcp://127.0.0.1:{port}");
    let base = format!(":{}/api/endpoints", d.port());
    for (name, ty) in [("test-remote", "EndpointType=1"), ("test-remote-2", "EndpointCreationType=1")] {
        let args = vec![
            "--form".into(),
            "POST".into(),
            base.clone(),
            seed_auth(&token),
            format!("Name={name}"),
            format!("URL={url}"),
            ty.into(),
        ];
        let (code, v) = httpie(args).await;
        assert_eq!(code, 0, "{v}");
        assert_endpoint_shape(&v, name, &url);
        assert_eq!(v["TLSConfig"], json!({"TLS": false, "TLSSkipVerify": false}), "{v}");
        assert_eq!(v["Snapshots"].as_array().unwrap().len(), 1, "{v}");
        let id = v["Id"].as_u64().unwrap();
        let (s, ver) = d.get_json(&format!("/api/endpoints/{id}/docker/version"), Some(&token)).await;
        assert_eq!(s, StatusCode::OK, "{ver}");
        assert!(ver["ApiVersion"].is_string());
    }
    assert!(accepted.load(std::sync::atomic::Ordering::Relaxed) >= 2, "traffic went through the TCP relay");
}

// ---------------------------------------------------------- validation

#[tokio::test]
async fn bad_registrations_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock_in(dir.path(), "docker.sock").await;
    let sock_url = mock.unix_url().unwrap();
    let d = Daemon::builder().args(["--max-upload-body", "65536"]).start().await;
    let token = d.admin_token().await;
    let pki = Pki::new();
    let regular_file = dir.path().join("not-a-socket");
    std::fs::write(&regular_file, b"x").unwrap();

    // (fields, files, status, message substring, details substring)
    type Case<'a> = (Vec<(&'a str, String)>, Vec<(&'a str, Vec<u8>)>, u16, &'a str, &'a str);
    let long_name = "n".repeat(10_000);
    let s = |v: &str| v.to_owned();
    let cases: Vec<Case> = vec![
        (vec![("URL", sock_url.clone())], vec![], 400, "Invalid environment name", "required"),
        (vec![("Name", s("   ")), ("URL", sock_url.clone())], vec![], 400, "Invalid environment name", ""),
        (vec![("Name", long_name), ("URL", sock_url.clone())], vec![], 400, "Invalid environment name", "255"),
        (vec![("Name", s("t")), ("EndpointCreationType", s("2"))], vec![], 400, "not supported", "Agent"),
        (vec![("Name", s("t")), ("EndpointCreationType", s("4"))], vec![], 400, "not supported", "Edge"),
        (vec![("Name", s("t")), ("EndpointType", s("5"))], vec![], 400, "not supported", "Kubernetes"),
        (vec![("Name", s("t")), ("EndpointCreationType", s("abc"))], vec![], 400, "Invalid environment type value", ""),
        (vec![("Name", s("t")), ("EndpointCreationType", s("0"))], vec![], 400, "Invalid environment type value", ""),
        (vec![("Name", s("t")), ("URL", s("http://127.0.0.1:2375"))], vec![], 400, "Invalid environment URL", "scheme"),
        (vec![("Name", s("t")), ("URL", s("tcp://"))], vec![], 400, "Invalid environment URL", "host"),
        (vec![("Name", s("t")), ("URL", s("tcp://127.0.0.1:99999"))], vec![], 400, "Invalid environment URL", "range"),
        (vec![("Name", s("t")), ("URL", s("tcp://127.0.0.1:abc"))], vec![], 400, "Invalid environment URL", "number"),
        (vec![("Name", s("t")), ("URL", sock_url.clone()), ("GroupID", s("99"))], vec![], 400, "Invalid GroupID", "99"),
        (vec![("Name", s("t")), ("URL", sock_url.clone()), ("GroupID", s("x"))], vec![], 400, "Invalid GroupID", ""),
        (
            vec![("Name", s("t")), ("URL", sock_url.clone()), ("TagIds", s("[1,"))],
            vec![],
            400,
            "Invalid TagIds parameter",
            "",
        ),
        (
            vec![("Name", s("t")), ("URL", sock_url.clone()), ("TagIds", s("[7]"))],
            vec![],
            400,
            "Invalid TagIds parameter",
            "Tag 7",
        ),
        (
            vec![("Name", s("t")), ("URL", s("tcp://127.0.0.1:1")), ("TLS", s("true"))],
            vec![],
            400,
            "Invalid CA certificate file",
            "",
        ),
        (
            vec![("Name", s("t")), ("URL", s("tcp://127.0.0.1:1")), ("TLS", s("true"))],
            vec![("TLSCACertFile", pki.ca_pem.clone().into_bytes())],
            400,
            "Invalid certificate file",
            "",
        ),
        (
            vec![("Name", s("t")), ("URL", s("tcp://127.0.0.1:1")), ("TLS", s("true"))],
            vec![
                ("TLSCACertFile", b"not a certificate".to_vec()),
                ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
                ("TLSKeyFile", pki.client_key_pem.clone().into_bytes()),
            ],
            400,
            "Invalid TLS files",
            "CERTIFICATE",
        ),
        (
            vec![("Name", s("t")), ("URL", s("tcp://127.0.0.1:1")), ("TLS", s("true"))],
            vec![
                ("TLSCACertFile", pki.ca_pem.clone().into_bytes()),
                ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
                ("TLSKeyFile", Pki::new().client_key_pem.into_bytes()),
            ],
            400,
            "Invalid TLS files",
            "does not match",
        ),
        (
            vec![("Name", s("t")), ("URL", s("tcp://127.0.0.1:1")), ("TLS", s("true"))],
            vec![
                ("TLSCACertFile", Pki::expired_ca_pem().into_bytes()),
                ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
                ("TLSKeyFile", pki.client_key_pem.clone().into_bytes()),
            ],
            400,
            "Invalid TLS files",
            "expired",
        ),
        // Valid TLS files, but nobody listens: the ping fails after the
        // files were written, and they must be gone again.
        (
            vec![("Name", s("t")), ("URL", s("tcp://127.0.0.1:1")), ("TLS", s("true"))],
            vec![
                ("TLSCACertFile", pki.ca_pem.clone().into_bytes()),
                ("TLSCertFile", pki.client_cert_pem.clone().into_bytes()),
                ("TLSKeyFile", pki.client_key_pem.clone().into_bytes()),
            ],
            500,
            "Unable to initiate communications with environment",
            "127.0.0.1:1",
        ),
        (
            vec![("Name", s("t")), ("URL", format!("unix://{}", dir.path().join("nothing.sock").display()))],
            vec![],
            400,
            "Invalid environment URL",
            "nothing.sock: the path does not exist",
        ),
        (
            vec![("Name", s("t")), ("URL", format!("unix://{}", regular_file.display()))],
            vec![],
            400,
            "Invalid environment URL",
            "is a regular file, not a unix socket",
        ),
        (
            vec![("Name", s("t")), ("URL", format!("unix://{}", dir.path().display()))],
            vec![],
            400,
            "Invalid environment URL",
            "is a directory, not a unix socket",
        ),
        (
            vec![("Name", s("t")), ("URL", sock_url.clone())],
            vec![("TLSCACertFile", vec![b'a'; 100_000])],
            413,
            "too large",
            "",
        ),
    ];
    for (i, (fields, files, status, message, details)) in cases.into_iter().enumerate() {
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (st, v) = create_multipart(&d, &token, &f, &files).await;
        assert_eq!(st.as_u16(), status, "case {i}: {v}");
        let m = v["message"].as_str().unwrap_or_else(|| panic!("case {i}: no message in {v}"));
        assert!(m.contains(message), "case {i}: message {m:?} lacks {message:?}");
        let det = v["details"].as_str().unwrap_or("");
        assert!(det.contains(details), "case {i}: details {det:?} lack {details:?}");
    }

    // The urlencoded path refuses the same way.
    let (st, v) = create_urlencoded(&d, &token, &[("Name", "t"), ("URL", "ftp://x:1")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // A thousand form parts (a short boundary keeps the body under the
    // size limit, so it is the part count that is refused).
    let mut body = String::new();
    for i in 0..1000 {
        body.push_str(&format!("--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nx\r\n"));
    }
    body.push_str("--b--\r\n");
    assert!(body.len() < 65536);
    let resp = d
        .request(Method::POST, "/api/endpoints", Some(&token))
        .header("content-type", "multipart/form-data; boundary=b")
        .body(body)
        .send()
        .await
        .unwrap();
    let (st, v) = read_json(resp).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["details"].as_str().unwrap().contains("parts"), "{v}");

    // A declared body beyond the limit is refused before it is read.
    let resp = d
        .request(Method::POST, "/api/endpoints", Some(&token))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(vec![b'x'; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing was stored and no TLS folder survived.
    let (s, list) = d.get_json("/api/endpoints", Some(&token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list, json!([]), "nothing stored half-way");
    let tls = d.data_dir().join("tls");
    let leftovers: Vec<_> =
        std::fs::read_dir(&tls).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "orphan TLS folders: {leftovers:?}");

    // Types that do not exist are refused (Portainer would make them Docker
    // API endpoints), and so are two type fields that disagree.
    for fields in [
        &[("EndpointCreationType", "9")][..],
        &[("EndpointCreationType", "0")],
        &[("EndpointCreationType", "-1")],
        &[("EndpointType", "6")],
        &[("EndpointCreationType", "1"), ("EndpointType", "2")],
    ] {
        let mut f = vec![("Name", "nine"), ("URL", sock_url.as_str())];
        f.extend_from_slice(fields);
        let (st, v) = create_urlencoded(&d, &token, &f).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{fields:?}: {v}");
        assert!(v["message"].as_str().unwrap().starts_with("Invalid environment type value"), "{v}");
    }
    // Types Berth knows but does not serve say so.
    for t in ["2", "3", "4", "5"] {
        let (st, v) =
            create_urlencoded(&d, &token, &[("Name", "nine"), ("EndpointCreationType", t), ("URL", &sock_url)]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{t}: {v}");
        assert_eq!(v["message"], "Environment type not supported", "{v}");
    }
    // A failed ping consumed ids, so this one is not 1.
    let (st, v) = create_urlencoded(
        &d,
        &token,
        &[("Name", "nine"), ("EndpointCreationType", "1"), ("EndpointType", "1"), ("URL", &sock_url)],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["Type"], 1);
    assert!(v["Id"].as_u64().unwrap() > 1, "ids consumed by failed pings are not reused: {v}");
    // Name uniqueness is exact.
    let (st, v) = create_urlencoded(&d, &token, &[("Name", "nine"), ("URL", &sock_url)]).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["message"], "Name is not unique");
    let (st, v) = create_urlencoded(&d, &token, &[("Name", "Nine"), ("URL", &sock_url)]).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // Values in the query string count too (Go's FormValue).
    let resp = d
        .request(Method::POST, &format!("/api/endpoints?Name=from-query&URL={}", urlencode(&sock_url)), Some(&token))
        .send()
        .await
        .unwrap();
    let (st, v) = read_json(resp).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["Name"], "from-query");

    // Ids that are not numbers, overflow, or are not spelled canonically.
    for bad in ["abc", "99999999999999999999999", "-1", "01", "+1", "%201", "1.0", "1%20"] {
        let (st, v) = d.get_json(&format!("/api/endpoints/{bad}"), Some(&token)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["message"], "Invalid environment identifier route variable");
    }
    let (st, _) = d.get_json("/api/endpoints/424242", Some(&token)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ------------------------------------------------------- list and filters

#[tokio::test]
async fn list_filters_sorting_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock_in(dir.path(), "docker.sock").await;
    let url = mock.unix_url().unwrap();
    let d = Daemon::start().await;
    let token = d.admin_token().await;
    let t = Some(token.as_str());

    let (_, prod) = d.post_json("/api/tags", t, &json!({"Name": "prod"})).await;
    let (_, eu) = d.post_json("/api/tags", t, &json!({"Name": "eu"})).await;
    let (prod, eu) = (prod["ID"].as_u64().unwrap(), eu["ID"].as_u64().unwrap());
    let (s, g) = d.post_json("/api/endpoint_groups", t, &json!({"Name": "Zeta group", "TagIDs": [eu]})).await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let gid = g["Id"].as_u64().unwrap();

    let mk = |name: &'static str, extra: Vec<(&'static str, String)>| {
        let mut f = vec![("Name", name.to_owned()), ("URL", url.clone())];
        f.extend(extra);
        f
    };
    let specs = [
        mk("bravo", vec![("TagIds", format!("[{prod}]"))]),
        mk("alpha", vec![("GroupID", gid.to_string())]),
        mk("charlie", vec![("TagIds", format!("[{prod},{eu}]")), ("PublicURL", "pub.example".into())]),
        mk("Delta", vec![]),
    ];
    let mut ids = Vec::new();
    for f in &specs {
        let fields: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, v) = create_urlencoded(&d, &token, &fields).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.push(v["Id"].as_u64().unwrap());
    }
    let (bravo, alpha, charlie, delta) = (ids[0], ids[1], ids[2], ids[3]);
    // Mark delta down by hand, as Portainer's PUT allows.
    let (s, v) = d.put_json(&format!("/api/endpoints/{delta}"), t, &json!({"Status": 2})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let list = |q: String| {
        let d = &d;
        let token = token.clone();
        async move {
            let resp = d.request(Method::GET, &format!("/api/endpoints{q}"), Some(&token)).send().await.unwrap();
            let total = resp.headers().get("x-total-count").map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
            let avail = resp.headers().get("x-total-available").map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
            let (s, v) = read_json(resp).await;
            assert_eq!(s, StatusCode::OK, "{q}: {v}");
            let ids: Vec<u64> = v.as_array().unwrap().iter().map(|e| e["Id"].as_u64().unwrap()).collect();
            (ids, total.unwrap(), avail.unwrap(), v)
        }
    };

    let (all, total, avail, v) = list(String::new()).await;
    assert_eq!(all, vec![bravo, alpha, charlie, delta]);
    assert_eq!((total, avail), (4, 4));
    assert_eq!(v[0]["Snapshots"].as_array().unwrap().len(), 1, "snapshots attached: {v}");
    let (_, _, _, v) = list("?excludeSnapshots=true".into()).await;
    assert_eq!(v[0]["Snapshots"], json!([]));

    assert_eq!(list("?sort=Name".into()).await.0, vec![alpha, bravo, charlie, delta], "case-insensitive name order");
    assert_eq!(list("?sort=Name&order=desc".into()).await.0, vec![delta, charlie, bravo, alpha]);
    assert_eq!(list("?sort=Status&order=desc".into()).await.0[0], delta);
    assert_eq!(list("?sort=Group".into()).await.0.last(), Some(&alpha), "\"Unassigned\" < \"Zeta group\"");

    // Paging: start is 1-based; totals count the filtered set.
    let (page, total, avail, _) = list("?sort=Name&start=2&limit=2".into()).await;
    assert_eq!(page, vec![bravo, charlie]);
    assert_eq!((total, avail), (4, 4));
    let (page, _, _, _) = list("?sort=Name&start=4&limit=2".into()).await;
    assert_eq!(page, vec![delta]);

    // Search: name, URL, tag names (own and the group's), group name.
    assert_eq!(list("?search=ALP".into()).await.0, vec![alpha]);
    assert_eq!(list("?search=prod".into()).await.0, vec![bravo, charlie]);
    assert_eq!(list("?search=zeta".into()).await.0, vec![alpha]);
    assert_eq!(list("?search=eu".into()).await.0, vec![alpha, charlie], "alpha via its group's tag");
    assert_eq!(list("?search=docker.sock".into()).await.0.len(), 4);
    let (found, total, avail, _) = list("?search=nothing-like-this".into()).await;
    assert!(found.is_empty());
    assert_eq!((total, avail), (0, 4));

    // Bracketed filters.
    assert_eq!(list(format!("?groupIds[]={gid}")).await.0, vec![alpha]);
    assert_eq!(list("?groupIds[]=1".into()).await.0, vec![bravo, charlie, delta]);
    assert_eq!(list(format!("?tagIds[]={prod}&tagIds[]={eu}")).await.0, vec![charlie], "all tags by default");
    assert_eq!(
        list(format!("?tagIds[]={prod}&tagIds[]={eu}&tagsPartialMatch=true")).await.0,
        vec![bravo, alpha, charlie]
    );
    assert_eq!(list(format!("?endpointIds[]={alpha}&endpointIds[]={delta}")).await.0, vec![alpha, delta]);
    assert_eq!(list(format!("?excludeIds[]={alpha}")).await.0, vec![bravo, charlie, delta]);
    assert_eq!(list("?status[]=2".into()).await.0, vec![delta]);
    assert_eq!(list("?types[]=1&types[]=2".into()).await.0.len(), 4);
    assert!(list("?types[]=2".into()).await.0.is_empty());
    assert_eq!(list("?types=2".into()).await.0.len(), 4, "unbracketed filters are ignored, as in Portainer");
    assert_eq!(list("?name=charlie".into()).await.0, vec![charlie]);
    assert!(list("?name=Charlie".into()).await.0.is_empty(), "name is exact");
    assert_eq!(list("?types%5B%5D=1&search=bra".into()).await.0, vec![bravo], "encoded brackets");

    for bad in ["?types[]=x", "?groupIds[]=1.5", "?status[]=", "?limit=ten"] {
        let (s, v) = d.get_json(&format!("/api/endpoints{bad}"), t).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["message"], "Invalid query parameters", "{bad}");
    }

    // Single GET, with and without the snapshot.
    let (s, v) = d.get_json(&format!("/api/endpoints/{charlie}"), t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["PublicURL"], "pub.example");
    assert_eq!(v["TagIds"], json!([prod, eu]));
    assert_eq!(v["Snapshots"][0]["DockerVersion"], "20.10.24", "{v}");
    let (_, v) = d.get_json(&format!("/api/endpoints/{charlie}?excludeSnapshot=true"), t).await;
    assert_eq!(v["Snapshots"], json!([]));
}

// ------------------------------------------------------------------ access

#[tokio::test]
async fn standard_users_see_only_what_they_were_granted() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock_in(dir.path(), "docker.sock").await;
    let url = mock.unix_url().unwrap();
    let d = Daemon::start().await;
    let admin = d.admin_token().await;
    let a = Some(admin.as_str());

    let (s, bob) =
        d.post_json("/api/users", a, &json!({"Username": "bob", "Password": "bobpassword12", "Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "{bob}");
    let bob_id = bob["Id"].as_u64().unwrap();
    let (s, team) = d.post_json("/api/teams", a, &json!({"Name": "devs"})).await;
    assert_eq!(s, StatusCode::OK, "{team}");
    let team_id = team["Id"].as_u64().unwrap();
    let (s, m) =
        d.post_json("/api/team_memberships", a, &json!({"UserID": bob_id, "TeamID": team_id, "Role": 2})).await;
    assert_eq!(s, StatusCode::OK, "{m}");

    let (_, g_team) = d.post_json("/api/endpoint_groups", a, &json!({"Name": "team group"})).await;
    let (_, g_other) = d.post_json("/api/endpoint_groups", a, &json!({"Name": "other group"})).await;
    let (g_team, g_other) = (g_team["Id"].as_u64().unwrap(), g_other["Id"].as_u64().unwrap());

    let mut ids = Vec::new();
    for (name, group) in [("direct", 1), ("via-team", 1), ("via-group", g_team), ("hidden", g_other)] {
        let gs = group.to_string();
        let (s, v) = create_urlencoded(&d, &admin, &[("Name", name), ("URL", &url), ("GroupID", &gs)]).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.push(v["Id"].as_u64().unwrap());
    }
    let (direct, via_team, via_group, hidden) = (ids[0], ids[1], ids[2], ids[3]);

    let bob_tok = d.login("bob", "bobpassword12").await;
    let b = Some(bob_tok.as_str());
    let (s, v) = d.get_json("/api/endpoints", b).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!([]), "nothing granted yet");

    let (s, v) = d
        .put_json(
            &format!("/api/endpoints/{direct}"),
            a,
            &json!({"UserAccessPolicies": {bob_id.to_string(): {"RoleId": 0}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["UserAccessPolicies"], json!({bob_id.to_string(): {"RoleId": 0}}));
    let (s, _) = d
        .put_json(
            &format!("/api/endpoints/{via_team}"),
            a,
            &json!({"TeamAccessPolicies": {team_id.to_string(): {"RoleId": 0}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = d
        .put_json(
            &format!("/api/endpoint_groups/{g_team}"),
            a,
            &json!({"TeamAccessPolicies": {team_id.to_string(): {"RoleId": 0}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let resp = d.request(Method::GET, "/api/endpoints", b).send().await.unwrap();
    assert_eq!(resp.headers()["x-total-available"], "3");
    let (_, v) = read_json(resp).await;
    let seen: Vec<u64> = v.as_array().unwrap().iter().map(|e| e["Id"].as_u64().unwrap()).collect();
    assert_eq!(seen, vec![direct, via_team, via_group]);
    for e in v.as_array().unwrap() {
        assert_eq!(e["UserAccessPolicies"], Value::Null, "standard users do not see policies");
        assert_eq!(e["TeamAccessPolicies"], Value::Null);
    }

    let (s, v) = d.get_json(&format!("/api/endpoints/{via_group}"), b).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = d.get_json(&format!("/api/endpoints/{hidden}"), b).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        v,
        json!({"message": "Permission denied to access environment", "details": "Access denied to environment"})
    );
    let (s, _) = d.get_json(&format!("/api/endpoints/{hidden}/docker/_ping"), b).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the proxy applies the same rule");
    let (s, _) = d.get_json(&format!("/api/endpoints/{via_group}/docker/_ping"), b).await;
    assert_eq!(s, StatusCode::OK);

    // Groups: non-admins list only those they hold a policy on.
    let (s, v) = d.get_json("/api/endpoint_groups", b).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().iter().map(|g| g["Id"].as_u64().unwrap()).collect::<Vec<_>>(), vec![g_team]);
    assert_eq!(v[0]["TeamAccessPolicies"], Value::Null, "policies are for admins");
    let (_, v) = d.get_json("/api/endpoint_groups", a).await;
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[1]["TeamAccessPolicies"], json!({team_id.to_string(): {"RoleId": 0}}));

    // Revoking the group policy takes effect at once.
    let (s, _) = d.put_json(&format!("/api/endpoint_groups/{g_team}"), a, &json!({"TeamAccessPolicies": {}})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = d.get_json(&format!("/api/endpoints/{via_group}"), b).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Admin-only routes.
    let (s, v) = create_urlencoded(&d, &bob_tok, &[("Name", "mine"), ("URL", &url)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["message"], "Access denied");
    for (m, p) in [
        (Method::DELETE, format!("/api/endpoints/{direct}")),
        (Method::PUT, format!("/api/endpoints/{direct}")),
        (Method::POST, "/api/endpoint_groups".to_owned()),
        (Method::POST, "/api/tags".to_owned()),
        (Method::POST, format!("/api/endpoints/{direct}/snapshot")),
    ] {
        let resp = d.request(m.clone(), &p, b).json(&json!({"Name": "x"})).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{m} {p}");
    }
    let (s, _) = d.get_json("/api/tags", b).await;
    assert_eq!(s, StatusCode::OK, "tags are readable by any user");
    let (s, _) = d.get_json(&format!("/api/endpoints/{direct}"), b).await;
    assert_eq!(s, StatusCode::OK, "nothing was deleted");
}

// ------------------------------------------------------- groups and tags

#[tokio::test]
async fn groups_and_tags_follow_their_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock_in(dir.path(), "docker.sock").await;
    let url = mock.unix_url().unwrap();
    let d = Daemon::start().await;
    let token = d.admin_token().await;
    let t = Some(token.as_str());

    let (s, v) = d.get_json("/api/endpoint_groups/1", t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["Name"], "Unassigned");

    let (s, tag) = d.post_json("/api/tags", t, &json!({"Name": "prod"})).await;
    assert_eq!(s, StatusCode::OK, "{tag}");
    assert_eq!(tag, json!({"ID": tag["ID"], "Name": "prod", "Endpoints": {}, "EndpointGroups": {}}));
    let tag_id = tag["ID"].as_u64().unwrap();
    let (s, v) = d.post_json("/api/tags", t, &json!({"Name": "prod"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["message"], "This name is already associated to a tag");
    let (s, _) = d.post_json("/api/tags", t, &json!({"Name": ""})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let tags = format!("[{tag_id}]");
    let (_, e1) = create_urlencoded(&d, &token, &[("Name", "e1"), ("URL", &url), ("TagIds", &tags)]).await;
    let (_, e2) = create_urlencoded(&d, &token, &[("Name", "e2"), ("URL", &url)]).await;
    let (e1, e2) = (e1["Id"].as_u64().unwrap(), e2["Id"].as_u64().unwrap());

    let (s, g) = d
        .post_json(
            "/api/endpoint_groups",
            t,
            &json!({"Name": "edge", "Description": "d", "AssociatedEndpoints": [e2], "TagIDs": [tag_id]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let gid = g["Id"].as_u64().unwrap();
    assert_eq!(g["TagIds"], json!([tag_id]));
    assert_eq!(g["UserAccessPolicies"], json!({}));
    let (_, v) = d.get_json(&format!("/api/endpoints/{e2}"), t).await;
    assert_eq!(v["GroupId"], gid, "AssociatedEndpoints moved e2");
    let (s, _) = d.post_json("/api/endpoint_groups", t, &json!({"Name": "x", "AssociatedEndpoints": [999]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = d.post_json("/api/endpoint_groups", t, &json!({"Name": "x", "TagIDs": [999]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = d.post_json("/api/endpoint_groups", t, &json!({"Description": "no name"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (_, v) = d.get_json("/api/tags", t).await;
    assert_eq!(v[0]["Endpoints"], json!({e1.to_string(): true}));
    assert_eq!(v[0]["EndpointGroups"], json!({gid.to_string(): true}));

    // Moving endpoints in and out of groups.
    let (s, _) = d
        .request(Method::PUT, &format!("/api/endpoint_groups/{gid}/endpoints/{e1}"), t)
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = d.get_json(&format!("/api/endpoints/{e1}"), t).await;
    assert_eq!(v["GroupId"], gid);
    let (s, _) = d.delete(&format!("/api/endpoint_groups/{gid}/endpoints/{e1}"), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = d.get_json(&format!("/api/endpoints/{e1}"), t).await;
    assert_eq!(v["GroupId"], 1);
    let (s, _) = d.delete(&format!("/api/endpoint_groups/{gid}/endpoints/999"), t).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Deleting a tag removes it everywhere.
    let (s, _) = d.delete(&format!("/api/tags/{tag_id}"), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = d.get_json(&format!("/api/endpoints/{e1}"), t).await;
    assert_eq!(v["TagIds"], json!([]));
    let (_, v) = d.get_json(&format!("/api/endpoint_groups/{gid}"), t).await;
    assert_eq!(v["TagIds"], json!([]));
    let (s, _) = d.delete(&format!("/api/tags/{tag_id}"), t).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Group 1 stays; deleting another group sends its members to group 1.
    let (s, v) = d.delete("/api/endpoint_groups/1", t).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["message"], "Unable to remove the default 'Unassigned' group");
    let (s, v) =
        d.put_json(&format!("/api/endpoint_groups/{gid}"), t, &json!({"Name": "renamed", "Description": "new"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((v["Name"].as_str(), v["Description"].as_str()), (Some("renamed"), Some("new")));
    let (s, _) = d.delete(&format!("/api/endpoint_groups/{gid}"), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = d.get_json(&format!("/api/endpoints/{e2}"), t).await;
    assert_eq!(v["GroupId"], 1);
    let (s, _) = d.get_json(&format!("/api/endpoint_groups/{gid}"), t).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // PUT validations.
    let (s, v) = d.put_json(&format!("/api/endpoints/{e1}"), t, &json!({"Name": "e2"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["message"], "Name is not unique");
    let (s, _) = d.put_json(&format!("/api/endpoints/{e1}"), t, &json!({"GroupID": 999})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = d.put_json(&format!("/api/endpoints/{e1}"), t, &json!({"TagIDs": [999]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = d.put_json(&format!("/api/endpoints/{e1}"), t, &json!({"URL": "gopher://x:1"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) =
        d.put_json(&format!("/api/endpoints/{e1}"), t, &json!({"UserAccessPolicies": {"bob": {"RoleId": 0}}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = d.put_json("/api/endpoints/999", t, &json!({"Name": "x"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Security settings.
    let (s, v) = d
        .put_json(
            &format!("/api/endpoints/{e1}/settings"),
            t,
            &json!({"allowBindMountsForRegularUsers": false, "enableHostManagementFeatures": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["SecuritySettings"]["allowBindMountsForRegularUsers"], false);
    assert_eq!(v["SecuritySettings"]["enableHostManagementFeatures"], true);
    assert_eq!(v["SecuritySettings"]["allowPrivilegedModeForRegularUsers"], false, "untouched flags keep their value");

    // Deleting: single, then bulk with a partial failure.
    let (s, _) = d.delete(&format!("/api/endpoints/{e1}"), t).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = d.get_json(&format!("/api/endpoints/{e1}"), t).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = d.delete(&format!("/api/endpoints/{e1}"), t).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let resp = d
        .request(Method::DELETE, "/api/endpoints", t)
        .json(&json!({"endpoints": [{"id": e2}, {"id": 999}]}))
        .send()
        .await
        .unwrap();
    let (s, v) = read_json(resp).await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT, "{v}");
    assert_eq!(v, json!({"deleted": [e2], "errors": [999]}));
    let resp = d.request(Method::DELETE, "/api/endpoints", t).json(&json!({"endpoints": []})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (_, e3) = create_urlencoded(&d, &token, &[("Name", "e3"), ("URL", &url)]).await;
    let resp = d
        .request(Method::DELETE, "/api/endpoints", t)
        .json(&json!({"endpoints": [{"id": e3["Id"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (_, v) = d.get_json("/api/endpoints", t).await;
    assert_eq!(v, json!([]));
}

// ------------------------------------------------------------ durability

#[tokio::test]
async fn endpoints_groups_and_tags_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock_in(dir.path(), "docker.sock").await;
    let url = mock.unix_url().unwrap();
    let mut d = Daemon::start().await;
    let token = d.admin_token().await;
    let t = Some(token.as_str());
    let (_, tag) = d.post_json("/api/tags", t, &json!({"Name": "keep"})).await;
    let (_, g) = d.post_json("/api/endpoint_groups", t, &json!({"Name": "kept group"})).await;
    let gs = g["Id"].to_string();
    let tags = format!("[{}]", tag["ID"]);
    let (s, e) =
        create_urlencoded(&d, &token, &[("Name", "kept"), ("URL", &url), ("GroupID", &gs), ("TagIds", &tags)]).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let id = e["Id"].as_u64().unwrap();
    let (_, before) = d.get_json(&format!("/api/endpoints/{id}?excludeSnapshot=true"), t).await;

    d.restart().await;
    let token = d.login(ADMIN_USER, ADMIN_PASSWORD).await;
    let t = Some(token.as_str());
    let (s, after) = d.get_json(&format!("/api/endpoints/{id}?excludeSnapshot=true"), t).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after, before);
    let (_, v) = d.get_json(&format!("/api/endpoints/{id}"), t).await;
    assert_eq!(v["Snapshots"][0]["DockerVersion"], "20.10.24", "the stored snapshot is loaded");
    let (_, groups) = d.get_json("/api/endpoint_groups", t).await;
    assert_eq!(groups.as_array().unwrap().len(), 2, "{groups}");
    let (_, tags) = d.get_json("/api/tags", t).await;
    assert_eq!(tags[0]["Endpoints"], json!({id.to_string(): true}));
    let (s, _) = d.get_json(&format!("/api/endpoints/{id}/docker/_ping"), t).await;
    assert_eq!(s, StatusCode::OK, "the pool is rebuilt at start");
    // Ids keep growing across restarts.
    let (_, e2) = create_urlencoded(&d, &token, &[("Name", "after restart"), ("URL", &url)]).await;
    assert!(e2["Id"].as_u64().unwrap() > id);
}

// ------------------------------------------------------------------ health

async fn metric_line(d: &Daemon, prefix: &str) -> Option<String> {
    let text = d.http().get(d.url("/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned)
}

#[tokio::test]
async fn the_health_checker_marks_dead_endpoints_down_and_revived_ones_up() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock_in(dir.path(), "docker.sock").await;
    let url = mock.unix_url().unwrap();
    // `/metrics` opened on the public port, as `--metrics-auth false` allows.
    let d = Daemon::builder()
        .args(["--health-interval", "1s", "--health-timeout", "1s", "--metrics-auth", "false"])
        .start()
        .await;
    let token = d.admin_token().await;
    let (s, v) = create_urlencoded(&d, &token, &[("Name", "flaky"), ("URL", &url)]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = v["Id"].as_u64().unwrap();
    // A second endpoint that stays healthy throughout.
    let other_mock = mock_in(dir.path(), "other.sock").await;
    let (_, v) = create_urlencoded(&d, &token, &[("Name", "steady"), ("URL", &other_mock.unix_url().unwrap())]).await;
    let steady = v["Id"].as_u64().unwrap();

    mock.set_fail(FailMode::Refuse).await;
    eventually(Duration::from_secs(10), "status 2", || async { (status_of(&d, &token, id).await == 2).then_some(()) })
        .await;
    assert_eq!(status_of(&d, &token, steady).await, 1);
    let line = metric_line(&d, &format!("berth_endpoint_up{{endpoint=\"{id}\"}}")).await.unwrap();
    assert!(line.ends_with(" 0"), "{line}");
    assert_eq!(
        metric_line(&d, "berth_endpoints{status=\"down\"}").await.unwrap(),
        "berth_endpoints{status=\"down\"} 1"
    );
    assert!(metric_line(&d, &format!("berth_endpoint_check_failures_total{{endpoint=\"{id}\"}}")).await.is_some());
    let (_, list) = d.get_json("/api/endpoints?status[]=2", Some(&token)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    mock.set_fail(FailMode::None).await;
    eventually(Duration::from_secs(10), "status 1", || async { (status_of(&d, &token, id).await == 1).then_some(()) })
        .await;
    let line = metric_line(&d, &format!("berth_endpoint_up{{endpoint=\"{id}\"}}")).await.unwrap();
    assert!(line.ends_with(" 1"), "{line}");

    // On-demand snapshots: the mock records the documents being read.
    mock.clear_requests();
    let resp = d.request(Method::POST, &format!("/api/endpoints/{id}/snapshot"), Some(&token)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let paths: Vec<String> = mock.requests().iter().map(|r| r.path().to_owned()).collect();
    for p in ["/_ping", "/info", "/version", "/containers/json", "/images/json", "/volumes"] {
        assert!(paths.iter().any(|x| x == p), "{p} not requested: {paths:?}");
    }
    mock.set_fail(FailMode::Refuse).await;
    let resp = d.request(Method::POST, "/api/endpoints/snapshot", Some(&token)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(status_of(&d, &token, id).await, 2, "the on-demand check applies at once");
    let resp = d.request(Method::POST, "/api/endpoints/999/snapshot", Some(&token)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Deleting forgets the endpoint's series.
    let (s, _) = d.delete(&format!("/api/endpoints/{id}"), Some(&token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(metric_line(&d, &format!("berth_endpoint_up{{endpoint=\"{id}\"}}")).await.is_none());
}

#[tokio::test]
async fn hanging_endpoints_do_not_delay_the_api_or_other_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::builder()
        .args(["--health-interval", "1s", "--health-timeout", "2s", "--health-concurrency", "4"])
        .start()
        .await;
    let token = d.admin_token().await;
    let mut hung = Vec::new();
    for i in 0..12 {
        let m = mock_in(dir.path(), &format!("h{i}.sock")).await;
        let (s, v) =
            create_urlencoded(&d, &token, &[("Name", &format!("hang-{i}")), ("URL", &m.unix_url().unwrap())]).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        m.set_fail(FailMode::Hang).await;
        hung.push(m);
    }
    let healthy = mock_in(dir.path(), "ok.sock").await;
    let (_, v) = create_urlencoded(&d, &token, &[("Name", "ok"), ("URL", &healthy.unix_url().unwrap())]).await;
    let ok_id = v["Id"].as_u64().unwrap();
    // Every API call and proxied request stays fast while checks hang.
    for _ in 0..20 {
        let start = std::time::Instant::now();
        let (s, _) = d.get_json("/api/endpoints?excludeSnapshots=true", Some(&token)).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = d.get_json(&format!("/api/endpoints/{ok_id}/docker/_ping"), Some(&token)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(start.elapsed() < Duration::from_millis(500), "took {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = eventually(Duration::from_secs(20), "hung endpoints marked down", || async {
        let (_, v) = d.get_json("/api/endpoints?status[]=2", Some(&token)).await;
        let n = v.as_array().unwrap().len();
        (n == 12).then_some(n)
    })
    .await;
    assert_eq!(down, 12);
    assert_eq!(status_of(&d, &token, ok_id).await, 1);
}
