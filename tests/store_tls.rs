//! PostgreSQL over TLS: a real PostgreSQL with `ssl=on` (its own `initdb`
//! in a temp dir, from SESSIOND_TEST_PG_BIN, on 127.0.0.1 and an ephemeral
//! port, plaintext TCP refused by `pg_hba.conf`), a test CA and a server
//! certificate for `localhost` made here with rcgen, and the real sessiond
//! binary in cluster mode against it with each libpq `sslmode`.
//!
//! Needs SESSIOND_TEST_PG_BIN (`bash tools/test` sets it); without it the
//! test fails naming that command.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::{as_pg, is_root, node_at, pg_bin};
use common::{Opts, Server, request};

/// A test CA and what it signed.
struct Pki {
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// Another CA, which signed nothing the server has.
    other_ca: PathBuf,
    /// The server's certificate (for `localhost` only) and key.
    cert_pem: String,
    key_pem: String,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_of = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        (cert, key)
    };
    let (ca, ca_key) = ca_of("sessiond test CA");
    let (other, _) = ca_of("some other CA");
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    let (ca_path, other_path) = (dir.join("ca.pem"), dir.join("other-ca.pem"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&other_path, other.pem()).unwrap();
    Pki { ca: ca_path, other_ca: other_path, cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// A private PostgreSQL with `ssl=on`, stopped on drop.
struct TlsPg {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TlsPg {
    fn start(pki: &Pki) -> TlsPg {
        let bin = pg_bin();
        // Under /tmp: user postgres must reach it, and the socket path must be short.
        let dir = tempfile::Builder::new().prefix("sd-tls").tempdir_in("/tmp").unwrap();
        let owner = if is_root() {
            let u = nix::unistd::User::from_name("postgres").unwrap().expect("user postgres (package postgresql)");
            Some((u.uid.as_raw(), u.gid.as_raw()))
        } else {
            None
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("pg");
        let data_s = data.to_str().unwrap();
        let out = as_pg(
            &bin.join("initdb"),
            &["-D", data_s, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"],
        );
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        // The key: mode 0600, owned by the server's user, or PostgreSQL refuses it.
        use std::os::unix::fs::PermissionsExt;
        for (name, body, mode) in [("server.crt", &pki.cert_pem, 0o644), ("server.key", &pki.key_pem, 0o600)] {
            let p = data.join(name);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
            }
        }
        // TCP only with TLS: a plaintext connection is refused, so a node
        // that works here spoke TLS.
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n").unwrap();
        let port = free_port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c ssl=on -c ssl_cert_file=server.crt \
             -c ssl_key_file=server.key -c fsync=off -c max_connections=100",
            dir.path().display()
        );
        let log = dir.path().join("postgres.log");
        let out = as_pg(
            &bin.join("pg_ctl"),
            &["-D", data_s, "-l", log.to_str().unwrap(), "-w", "-t", "60", "-o", &opts, "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let pg = TlsPg { bin, dir, port };
        pg.psql("postgres", "CREATE DATABASE sessiond_tls");
        pg
    }

    /// Runs SQL over the unix socket; psql's unaligned output.
    fn psql(&self, db: &str, q: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", self.dir.path().to_str().unwrap(), "-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", q])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {q}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A store URL for `host` with the given TLS parameters.
    fn url(&self, host: &str, tls: &str) -> String {
        format!("postgres://postgres@{host}:{}/sessiond_tls?{tls}", self.port)
    }
}

impl Drop for TlsPg {
    fn drop(&mut self) {
        let data = self.dir.path().join("pg");
        let _ = as_pg(&self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}

fn put(s: &Server, id: &str, v: &str) -> u16 {
    request("PUT", &s.url(&format!("/v1/sessions/{id}/attributes/user")), &[], Some(v.as_bytes())).status
}

fn get_attr(s: &Server, id: &str) -> (u16, String) {
    let r = request("GET", &s.url(&format!("/v1/sessions/{id}/attributes/user")), &[], None);
    (r.status, r.text())
}

/// Two nodes on `url`: a session made and written on one is read on the
/// other, through the store.
fn two_nodes_share_a_session(pg: &TlsPg, url: &str, what: &str) {
    let n1 = node_at(url, 1, &[], None);
    let n2 = node_at(url, 2, &[], None);
    let id = common::create(&n1);
    assert_eq!(put(&n1, &id, what), 204, "{what}: write-through on node 1; log:\n{}", n1.log());
    assert_eq!(get_attr(&n2, &id), (200, what.to_string()), "{what}: node 2 reads node 1's session from the store");
    let enc = pg.psql(
        "sessiond_tls",
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'sessiond'",
    );
    let (tls, all) = enc.split_once('|').unwrap();
    assert!(
        all.parse::<u32>().unwrap() > 0 && tls == all,
        "{what}: every sessiond connection is TLS (ssl|all = {enc})"
    );
}

/// A node on `url` that must stop at its start with `says` in its log.
fn refused(url: &str, says: &str) -> String {
    let args = ["--set", "node_id=1", "--set", &format!("cluster.store={url}")];
    let mut s = Server::start_with(Opts { args: &args, wait_ready: false, ..Default::default() });
    let code = s.wait_exit(Duration::from_secs(30));
    let log = s.log();
    assert!(log.contains(says), "expected {says:?} in the log of a node on {url}; log:\n{log}");
    assert_ne!(code, Some(0), "a refused store stops the node with a failure code; log:\n{log}");
    log.lines().find(|l| l.contains(says)).unwrap().to_string()
}

#[test]
fn postgres_tls_modes_verify_as_libpq_says() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(tmp.path());
    let pg = TlsPg::start(&pki);
    let (ca, other) = (pki.ca.display().to_string(), pki.other_ca.display().to_string());

    // A good certificate for the host the URL names.
    two_nodes_share_a_session(&pg, &pg.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")), "full");

    // The URL names 127.0.0.1; the certificate is for localhost only.
    let line = refused(
        &pg.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")),
        "certificate host name mismatch: server certificate is for localhost, the URL names 127.0.0.1 \
         (sslmode=verify-full",
    );
    println!("verify-full, wrong host: {line}");
    // verify-ca checks the chain only: the same host is accepted.
    two_nodes_share_a_session(&pg, &pg.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")), "ca");

    // A CA that did not sign the server's certificate.
    let line = refused(&pg.url("localhost", &format!("sslmode=verify-ca&sslrootcert={other}")), "unknown CA");
    assert!(line.contains(&other), "the message names the CA file: {line}");
    println!("verify-ca, unknown CA: {line}");
    // require with sslrootcert verifies the chain, as libpq does.
    refused(&pg.url("localhost", &format!("sslmode=require&sslrootcert={other}")), "unknown CA");
    // require without sslrootcert encrypts without verifying.
    two_nodes_share_a_session(&pg, &pg.url("127.0.0.1", "sslmode=require"), "require");
    // prefer: TLS, since the server offers it (plaintext TCP is refused here).
    two_nodes_share_a_session(&pg, &pg.url("127.0.0.1", "sslmode=prefer"), "prefer");
}
