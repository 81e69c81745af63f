//! TLS to PostgreSQL: a rustls connector (`tokio-postgres-rustls`) that
//! verifies the server's certificate the way libpq's `sslmode` says.
//!
//! | `sslmode` | chain checked against `sslrootcert` | host name checked |
//! | --- | --- | --- |
//! | `disable` | no TLS | |
//! | `prefer` | no | no (TLS only if the server offers it) |
//! | `require` | only when `sslrootcert` is given (libpq) | no |
//! | `verify-ca` | yes | no |
//! | `verify-full` | yes | yes |
//!
//! The handshake's signatures are always checked (ring). A refusal is a
//! [`Refusal`] carried inside rustls's error, so the store can tell a
//! certificate it refused from an unreachable server and say which check
//! failed ([`refusal_in`]). This module reads the CA file and builds the
//! connector; it never opens a connection.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::store_url::{PgTls, SslMode};

/// Why the connector refused the server's certificate, in words that name
/// the check, the values and the `sslmode`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(String);

/// Why the TLS settings of a PostgreSQL URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The `sslrootcert` file is unreadable or holds no usable certificate.
    #[error("sslrootcert={path}: {why}")]
    RootCert {
        /// The file, as configured.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// rustls has no protocol version in common with its provider.
    #[error("TLS to PostgreSQL: {0}")]
    Protocols(rustls::Error),
}

/// The connector `tls` asks for, or `None` when no TLS is spoken (`disable`,
/// or unix sockets only, where libpq ignores `sslmode`). The error names the
/// CA file and what is wrong with it.
pub fn connector(tls: &PgTls) -> Result<Option<Connector>, TlsSetupError> {
    if tls.mode == SslMode::Disable || tls.unix_only {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check = if tls.verifies_chain() {
        let path = tls.root_cert.as_ref().expect("a mode that verifies the chain has sslrootcert (PgUrl::parse)");
        let shown = path.display();
        let mut roots = rustls::RootCertStore::empty();
        let bad = |why: String| TlsSetupError::RootCert { path: shown.to_string(), why };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        for c in certs {
            let c = c.map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
            roots.add(c).map_err(|e| bad(format!("a certificate rustls cannot use: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Check::Chain { webpki, host: tls.mode == SslMode::VerifyFull, root_cert: shown.to_string() }
    } else {
        Check::Nothing
    };
    let verifier = Verifier { check, mode: tls.mode, provider: provider.clone() };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Protocols)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Some(Connector(MakeRustlsConnect::new(config))))
}

/// The rustls connector, which also takes a host list's unix sockets:
/// a socket has no host name, and PostgreSQL refuses TLS there before any
/// name is used (so `prefer` goes on in plaintext, stricter modes fail
/// that host and try the next).
#[derive(Clone)]
pub struct Connector(MakeRustlsConnect);

/// The name given for a unix socket; never sent (see [`Connector`]).
const NO_HOST: &str = "unix-socket.invalid";

impl<S> MakeTlsConnect<S> for Connector
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        <MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(
            &mut self.0,
            if hostname.is_empty() { NO_HOST } else { hostname },
        )
    }
}

/// The [`Refusal`] somewhere in `e`'s chain of causes, if the connector
/// refused the certificate.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(r) = refusal_in(inner)
        {
            return Some(r);
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(o)))) =
            e.downcast_ref::<rustls::Error>()
            && let Some(r) = o.downcast_ref::<Refusal>()
        {
            return Some(r.0.clone());
        }
        cur = e.source();
    }
    None
}

/// What is checked of the server's certificate.
#[derive(Debug)]
enum Check {
    /// `prefer`, or `require` without `sslrootcert`: encryption only.
    Nothing,
    /// The chain against the roots, and the host name when `host`.
    Chain {
        /// rustls's verifier over the `sslrootcert` roots.
        webpki: Arc<WebPkiServerVerifier>,
        /// `verify-full`: the name must match too.
        host: bool,
        /// The CA file, for messages.
        root_cert: String,
    },
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    /// For messages.
    mode: SslMode,
    /// Checks the handshake's signatures.
    provider: Arc<CryptoProvider>,
}

fn refuse(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(why)))))
}

/// `DnsName("db1")` or `IpAddress(10.0.0.1)` (webpki's Debug form) as `db1`, `10.0.0.1`.
fn plain_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|s| s.strip_suffix("\")"))
        .or_else(|| presented.strip_prefix("IpAddress(").and_then(|s| s.strip_suffix(')')))
        .unwrap_or(presented)
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Check::Chain { webpki, host, root_cert } = &self.check else {
            return Ok(ServerCertVerified::assertion());
        };
        let mode = self.mode.as_str();
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(v) => Ok(v),
            // webpki checks the name last: the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !host => Ok(ServerCertVerified::assertion()),
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected,
                presented,
            })) => {
                let names: Vec<&str> = presented.iter().map(|p| plain_name(p)).collect();
                let names = if names.is_empty() { "no host name".to_string() } else { names.join(", ") };
                Err(refuse(format!(
                    "certificate host name mismatch: server certificate is for {names}, the URL names {} \
                     (sslmode={mode}; fix the URL's host, or the certificate's subjectAltName)",
                    expected.to_str()
                )))
            }
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => Err(refuse(format!(
                "certificate host name mismatch: server certificate is not for {}, the host the URL names \
                 (sslmode={mode})",
                server_name.to_str()
            ))),
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => Err(refuse(format!(
                "unknown CA: the server's certificate does not lead to a CA in sslrootcert={root_cert} \
                 (sslmode={mode}; give the CA that signed it)"
            ))),
            Err(rustls::Error::InvalidCertificate(e)) => {
                Err(refuse(format!("the server's certificate is refused: {e} (sslmode={mode})")))
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webpki_names_read_plainly() {
        assert_eq!(plain_name("DnsName(\"db1.example\")"), "db1.example");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn a_refusal_is_found_through_io_and_rustls_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refuse("unknown CA: x".into()));
        assert_eq!(refusal_in(&io).as_deref(), Some("unknown CA: x"));
        let other = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert_eq!(refusal_in(&other), None);
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let tls = |p: &std::path::Path| PgTls {
            mode: SslMode::VerifyFull,
            root_cert: Some(p.to_path_buf()),
            unix_only: false,
        };
        let missing = dir.path().join("nope.pem");
        let e = connector(&tls(&missing)).err().unwrap().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let e = connector(&tls(&empty)).err().unwrap().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        // No TLS at all for disable and unix sockets.
        let none = PgTls { mode: SslMode::Disable, root_cert: None, unix_only: false };
        assert!(connector(&none).unwrap().is_none());
        let unix = PgTls { mode: SslMode::VerifyFull, root_cert: Some(missing), unix_only: true };
        assert!(connector(&unix).unwrap().is_none());
    }
}
