//! The zip a user downloads for a new bundle, in the layout Docker clients
//! read from `DOCKER_CERT_PATH` (`ca.pem`, `cert.pem`, `key.pem`), plus
//! `env.sh` (the variables for each endpoint the user may use) and
//! `contexts.sh` (one `docker context create` per endpoint).
//!
//! Endpoint names and the host come from admins and from the request;
//! everything written into the shell files is reduced to a safe alphabet
//! first, so a hostile endpoint name cannot put a command in a script the
//! user is told to source.

use std::io::Write;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// An endpoint the bundle's user may use.
pub struct Target {
    pub id: u64,
    pub name: String,
}

/// What goes in the archive.
pub struct Contents<'a> {
    pub bundle_id: u64,
    pub username: &'a str,
    pub ca_pem: &'a str,
    pub cert_pem: &'a str,
    /// None when the client sent a CSR and keeps its key.
    pub key_pem: Option<&'a str>,
    /// `host:port` of Berth's HTTPS listener, as clients reach it.
    pub https_authority: &'a str,
    pub endpoints: &'a [Target],
}

/// Builds the zip (stored, not compressed: a few KiB of PEM).
pub fn build(c: &Contents<'_>) -> std::io::Result<Vec<u8>> {
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let file =
        |mode: u32| SimpleFileOptions::default().compression_method(CompressionMethod::Stored).unix_permissions(mode);
    let mut add = |name: &str, mode: u32, body: &str| -> std::io::Result<()> {
        zip.start_file(name, file(mode)).map_err(std::io::Error::other)?;
        zip.write_all(body.as_bytes())
    };
    add("ca.pem", 0o644, c.ca_pem)?;
    add("cert.pem", 0o644, c.cert_pem)?;
    if let Some(key) = c.key_pem {
        add("key.pem", 0o600, key)?;
    }
    add("env.sh", 0o644, &env_sh(c))?;
    add("contexts.sh", 0o755, &contexts_sh(c))?;
    let cursor = zip.finish().map_err(std::io::Error::other)?;
    Ok(cursor.into_inner())
}

/// Keeps `[A-Za-z0-9._-]`, replacing anything else with `-`.
fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect()
}

/// A host or `host:port` (IPv6 in brackets) reduced to what a URL
/// authority may hold; anything else becomes `localhost`.
pub fn safe_authority(s: &str) -> String {
    let ok = !s.is_empty()
        && s.len() <= 300
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        s.to_string()
    } else {
        "localhost".to_string()
    }
}

fn docker_host(c: &Contents<'_>, endpoint: u64) -> String {
    format!("tcp://{}/api/endpoints/{endpoint}/docker", safe_authority(c.https_authority))
}

fn env_sh(c: &Contents<'_>) -> String {
    let mut s = format!(
        "# Berth client bundle {} for {}: `. ./env.sh` in a POSIX shell.\n\
         # Docker clients then reach Berth over HTTPS with this folder's certificate.\n\
         export DOCKER_TLS_VERIFY=1\n\
         export DOCKER_CERT_PATH=\"$(cd \"$(dirname \"${{BASH_SOURCE:-$0}}\")\" && pwd)\"\n",
        c.bundle_id,
        safe(c.username)
    );
    if c.endpoints.is_empty() {
        s.push_str("# No endpoint is granted to this user yet: set DOCKER_HOST once one is.\n");
    }
    for (i, e) in c.endpoints.iter().enumerate() {
        let comment = if i == 0 { "" } else { "# " };
        s.push_str(&format!(
            "{comment}export DOCKER_HOST={}  # endpoint {} ({})\n",
            docker_host(c, e.id),
            e.id,
            safe(&e.name)
        ));
    }
    s
}

fn contexts_sh(c: &Contents<'_>) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# One Docker context per endpoint this bundle's user may use:\n# `sh contexts.sh`, then `docker context use <name>`.\nset -e\nDIR=\"$(cd \"$(dirname \"$0\")\" && pwd)\"\n",
    );
    for e in c.endpoints {
        let name = format!("berth-{}-{}", e.id, safe(&e.name));
        s.push_str(&format!(
            "docker context create '{name}' --description 'Berth endpoint {}' --docker \"host={},ca=$DIR/ca.pem,cert=$DIR/cert.pem,key=$DIR/key.pem\"\n",
            e.id,
            docker_host(c, e.id)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_the_files_and_hostile_names_stay_inert() {
        let endpoints =
            [Target { id: 1, name: "prod".into() }, Target { id: 2, name: "x'; rm -rf / #$(id)\n`id`".into() }];
        let c = Contents {
            bundle_id: 3,
            username: "bob",
            ca_pem: "CA",
            cert_pem: "CERT",
            key_pem: Some("KEY"),
            https_authority: "berth.example:9443",
            endpoints: &endpoints,
        };
        let bytes = build(&c).unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut names: Vec<String> = zip.file_names().map(str::to_string).collect();
        names.sort();
        assert_eq!(names, ["ca.pem", "cert.pem", "contexts.sh", "env.sh", "key.pem"]);
        let read = |zip: &mut zip::ZipArchive<_>, n: &str| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut zip.by_name(n).unwrap(), &mut s).unwrap();
            s
        };
        let env = read(&mut zip, "env.sh");
        assert!(env.contains("export DOCKER_HOST=tcp://berth.example:9443/api/endpoints/1/docker"), "{env}");
        assert!(env.contains("# export DOCKER_HOST=tcp://berth.example:9443/api/endpoints/2/docker"), "{env}");
        let contexts = read(&mut zip, "contexts.sh");
        for bad in ["$(id)", "`id`", "'; rm"] {
            assert!(!env.contains(bad) && !contexts.contains(bad), "{bad} reached a script");
        }
        assert_eq!(zip.by_name("key.pem").unwrap().unix_mode().map(|m| m & 0o777), Some(0o600));
    }

    #[test]
    fn authorities_are_reduced_to_a_safe_alphabet() {
        assert_eq!(safe_authority("[::1]:9443"), "[::1]:9443");
        assert_eq!(safe_authority("evil;id"), "localhost");
        assert_eq!(safe_authority(""), "localhost");
    }
}
