//! TLS on TCP listeners (issue 19): `--certfile`, `--keyfile`, `--keyfile-password`,
//! `--ca-certs` and `--cert-reqs` checked and loaded into a rustls `ServerConfig`, and what a
//! finished handshake tells the app ([`TlsInfo`], mod_ssl's `SSL_*` variables).
//!
//! It owns no socket: the handshake runs in the connection's task on the I/O thread
//! (`protocol.rs`), bounded by `--header-timeout`. No OpenSSL anywhere: rustls, with the
//! aws-lc-rs provider (why: [`provider`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use pkcs8::der::{self, Decode};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CipherSuite, ProtocolVersion, RootCertStore, ServerConfig, ServerConnection};
use thiserror::Error;

use crate::config::{CertReqs, Config, HttpVersions};

/// A problem with one of the TLS files, found before the first connection is accepted: the
/// option, the file, and what is wrong with it (one line).
#[derive(Debug, Error)]
#[error("{option} {}: {problem}", file.display())]
pub struct TlsError {
    pub option: &'static str,
    pub file: PathBuf,
    pub problem: String,
}

/// The crypto provider: aws-lc-rs, rustls' default. Checked (issue 19) on this project's
/// machines, which have a C compiler and no cmake or nasm: aws-lc-sys 0.47 builds from
/// crates.io with the `cc` crate alone there (~60 s of CPU, once). Chosen over ring for its
/// faster RSA signing and ECDHE (the cost of a new TLS connection) and for being what rustls
/// maintains first; ring stays the fallback for a platform where aws-lc-sys does not build
/// (switch the `aws_lc_rs` features of rustls and tokio-rustls to `ring`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS sessions remembered per worker for resumption by session ID (TLS 1.2 clients without
/// tickets). Bounded: each entry is a few hundred bytes. rustls' own default is 256; a worker
/// serves thousands of clients.
const SESSION_CACHE: usize = 4096;

/// The longest session a ticket may carry (see [`TlsFiles::from_config`]).
const TICKET_BOUND: usize = 16 * 1024;

/// The TLS options, checked for consistency, and the session-ticket keys: made once, in the
/// supervisor before it forks, so that every worker of a run honours the others' tickets.
#[derive(Clone)]
pub struct TlsFiles {
    certfile: PathBuf,
    keyfile: Option<PathBuf>,
    password: Option<String>,
    ca_certs: Option<PathBuf>,
    cert_reqs: CertReqs,
    /// The ALPN protocols offered, in order of preference (`--http`).
    alpn: Vec<Vec<u8>>,
    tickets: Arc<dyn ProducesTickets>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field("ca_certs", &self.ca_certs)
            .field("cert_reqs", &self.cert_reqs)
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// The TLS options of `config`; `None` without `--certfile` (the other TLS options alone
    /// are an error: they would be silently ignored).
    pub fn from_config(config: &Config) -> Result<Option<TlsFiles>, TlsError> {
        let Some(certfile) = config.certfile.clone() else {
            let stray = [
                ("--keyfile", config.keyfile.as_ref()),
                ("--ca-certs", config.ca_certs.as_ref()),
            ];
            if let Some((option, Some(file))) = stray.into_iter().find(|(_, f)| f.is_some()) {
                return Err(TlsError {
                    option,
                    file: file.clone(),
                    problem: "given without --certfile (TLS needs a certificate)".into(),
                });
            }
            return Ok(None);
        };
        if config.cert_reqs != CertReqs::None && config.ca_certs.is_none() {
            return Err(TlsError {
                option: "--certfile",
                file: certfile,
                problem: "--cert-reqs optional or required needs --ca-certs (the CAs client \
                          certificates are checked against)"
                    .into(),
            });
        }
        if let (CertReqs::None, Some(ca_certs)) = (config.cert_reqs, &config.ca_certs) {
            tracing::warn!(
                "--ca-certs {}: not used with --cert-reqs none (client certificates are not \
                 asked for)",
                ca_certs.display()
            );
        }
        let tickets = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError {
            option: "--certfile",
            file: certfile.clone(),
            problem: format!("cannot make session-ticket keys: {e}"),
        })?;
        // rustls' ticketer refuses to decrypt a ticket longer than the longest it has itself
        // encrypted, so a worker that has issued none rejected every ticket of the others
        // (seen in test_tls13_sessions_resume_on_every_worker). One ticket's worth of
        // encryption here, before the fork, sets that bound for all: tickets up to
        // TICKET_BOUND (a session with a client certificate chain is a few KiB).
        let _ = tickets.encrypt(&[0; TICKET_BOUND]);
        Ok(Some(TlsFiles {
            certfile,
            keyfile: config.keyfile.clone(),
            password: config.keyfile_password.clone(),
            ca_certs: config.ca_certs.clone(),
            cert_reqs: config.cert_reqs,
            alpn: match config.http {
                HttpVersions::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                HttpVersions::Http1 => vec![b"http/1.1".to_vec()],
                HttpVersions::Http2 => vec![b"h2".to_vec()],
            },
            tickets,
        }))
    }

    /// Reads the files and builds the server's TLS configuration: called at start (so a bad
    /// file stops wizgy before it accepts anything) and by each new worker (so a reload picks
    /// up new files). An expired certificate is logged as a warning, not refused: renewing it
    /// and reloading is the fix, and refusing to start would take the site down instead.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let certs = self.certificates()?;
        warn_if_expired(&self.certfile, &certs[0])?;
        let (key_option, key_path) = match &self.keyfile {
            Some(path) => ("--keyfile", path.as_path()),
            None => ("--certfile", self.certfile.as_path()),
        };
        let key_error = |problem: String| TlsError {
            option: key_option,
            file: key_path.to_owned(),
            problem,
        };
        let key = self.private_key(key_option, key_path)?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_error(format!("unusable private key: {e}")))?;
        let certified = CertifiedKey::new(certs, signing_key);
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            certified.keys_match()
        {
            return Err(key_error(format!(
                "the key does not match the certificate in {}",
                self.certfile.display()
            )));
        }
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| self.cert_error(format!("TLS setup failed: {e}")))?;
        let builder = match (self.cert_reqs, &self.ca_certs) {
            (CertReqs::None, _) | (_, None) => builder.with_no_client_auth(),
            (reqs, Some(ca_path)) => {
                let roots = Arc::new(read_roots(ca_path)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                let verifier = match reqs {
                    CertReqs::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier.build().map_err(|e| TlsError {
                    option: "--ca-certs",
                    file: ca_path.clone(),
                    problem: format!("cannot verify clients with these CAs: {e}"),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::new(certified))));
        // `h2` first: a browser that offers both gets HTTP/2. A client that offers ALPN but
        // none of these is refused in the handshake (no_application_protocol); one that
        // offers none is served (see crate::protocol for which protocol it gets).
        config.alpn_protocols = self.alpn.clone();
        // Resumption: tickets (stateless, keys shared by the workers) and a bounded cache.
        config.ticketer = self.tickets.clone();
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        // No 0-RTT: early data can be replayed, and WSGI apps cannot tell it apart.
        config.max_early_data_size = 0;
        config.send_half_rtt_data = false;
        Ok(Arc::new(config))
    }

    fn cert_error(&self, problem: String) -> TlsError {
        TlsError {
            option: "--certfile",
            file: self.certfile.clone(),
            problem,
        }
    }

    /// The chain in `--certfile`: at least one certificate, each parsed as PEM.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let text = read(&self.certfile, "--certfile")?;
        let certs = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.cert_error(format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(self
                .cert_error("no certificate in it (expected -----BEGIN CERTIFICATE-----)".into()));
        }
        Ok(certs)
    }

    /// The private key in `path`: PKCS#8 (decrypted with `--keyfile-password` if encrypted),
    /// PKCS#1 or SEC1.
    fn private_key(
        &self,
        option: &'static str,
        path: &Path,
    ) -> Result<PrivateKeyDer<'static>, TlsError> {
        let error = |problem: String| TlsError {
            option,
            file: path.to_owned(),
            problem,
        };
        let text = read(path, option)?;
        if let Some(encrypted) = pem_section(&text, "ENCRYPTED PRIVATE KEY") {
            let Some(password) = &self.password else {
                return Err(error(
                    "the key is encrypted: give --keyfile-password (or WIZGY_KEYFILE_PASSWORD)"
                        .into(),
                ));
            };
            let (_, document) = der::Document::from_pem(encrypted)
                .map_err(|e| error(format!("not valid PEM: {e}")))?;
            let info = pkcs8::EncryptedPrivateKeyInfo::from_der(document.as_bytes())
                .map_err(|e| error(format!("not an encrypted PKCS#8 key: {e}")))?;
            let plain = info.decrypt(password.as_bytes()).map_err(|_| {
                error(
                    "cannot decrypt the key: wrong --keyfile-password (or an unsupported cipher)"
                        .into(),
                )
            })?;
            return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                plain.as_bytes().to_vec(),
            )));
        }
        if text
            .windows(b"Proc-Type: 4,ENCRYPTED".len())
            .any(|w| w == b"Proc-Type: 4,ENCRYPTED")
        {
            return Err(error(
                "the key uses OpenSSL's legacy PEM encryption: convert it to encrypted PKCS#8 \
                 (openssl pkcs8 -topk8 -in KEY -out KEY.pk8)"
                    .into(),
            ));
        }
        match PrivateKeyDer::from_pem_slice(&text) {
            Ok(key) => {
                if self.password.is_some() {
                    tracing::warn!(
                        "{option} {}: the key is not encrypted; --keyfile-password is not used",
                        path.display()
                    );
                }
                Ok(key)
            }
            Err(pem::Error::NoItemsFound) => Err(error(
                "no private key in it (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                    .into(),
            )),
            Err(e) => Err(error(format!("not valid PEM: {e}"))),
        }
    }
}

/// The whole file, or the one-line reason it cannot be read.
fn read(path: &Path, option: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        option,
        file: path.to_owned(),
        problem: format!("cannot read it: {}", io_reason(&e)),
    })
}

/// An I/O error without the "(os error N)" suffix.
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The first PEM block labelled `label` in `text`, as text.
fn pem_section<'a>(text: &'a [u8], label: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(text).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

/// The client CAs in `--ca-certs`.
fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let error = |problem: String| TlsError {
        option: "--ca-certs",
        file: path.to_owned(),
        problem,
    };
    let text = read(path, "--ca-certs")?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.map_err(|e| error(format!("not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| error(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error(
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(roots)
}

/// Warns when the leaf certificate's notAfter has passed (clients will refuse it).
fn warn_if_expired(path: &Path, leaf: &CertificateDer<'_>) -> Result<(), TlsError> {
    let cert = x509_cert::Certificate::from_der(leaf).map_err(|e| TlsError {
        option: "--certfile",
        file: path.to_owned(),
        problem: format!("the first certificate is not valid X.509: {e}"),
    })?;
    let not_after = cert.tbs_certificate.validity.not_after.to_system_time();
    if not_after < SystemTime::now() {
        let date = httpdate::fmt_http_date(not_after);
        tracing::warn!(
            "--certfile {}: the certificate expired on {date}; clients will refuse it",
            path.display()
        );
    }
    Ok(())
}

/// What the app learns of a connection's TLS (mod_ssl's `SSL_*` variables). Made once per
/// connection, after the handshake, and shared by its exchanges.
#[derive(Debug)]
pub struct TlsInfo {
    /// `SSL_PROTOCOL`: `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
    /// `SSL_CIPHER`: the cipher suite's OpenSSL name, as mod_ssl reports it.
    pub cipher: &'static str,
    /// The client's verified certificate, if it sent one.
    pub client: Option<ClientCertificate>,
    /// The protocol ALPN picked (`h2`, `http/1.1`), if the client offered ALPN.
    pub alpn: Option<Vec<u8>>,
}

/// A client certificate the verifier accepted (`SSL_CLIENT_VERIFY=SUCCESS`).
#[derive(Debug)]
pub struct ClientCertificate {
    /// `SSL_CLIENT_S_DN`: the subject, RFC 4514 (`CN=alice,O=Example`).
    pub subject: String,
    /// `SSL_CLIENT_I_DN`: the issuer, RFC 4514.
    pub issuer: String,
    /// `SSL_CLIENT_CERT`: the certificate, PEM.
    pub pem: String,
}

impl TlsInfo {
    /// What the finished handshake of `conn` negotiated.
    pub fn of(conn: &ServerConnection) -> TlsInfo {
        let protocol = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map_or("", |suite| openssl_name(suite.suite()));
        let client = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| ClientCertificate::of(leaf));
        TlsInfo {
            protocol,
            cipher,
            client,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        }
    }
}

impl ClientCertificate {
    fn of(leaf: &CertificateDer<'_>) -> Option<ClientCertificate> {
        // The verifier has parsed it already; a parse failure here cannot normally happen,
        // and leaves the app without the names rather than failing the connection.
        let cert = x509_cert::Certificate::from_der(leaf).ok()?;
        let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, leaf).ok()?;
        Some(ClientCertificate {
            subject: cert.tbs_certificate.subject.to_string(),
            issuer: cert.tbs_certificate.issuer.to_string(),
            pem,
        })
    }
}

/// OpenSSL's name of a cipher suite (what mod_ssl's `SSL_CIPHER` and Python's
/// `SSLSocket.cipher()` say); IANA's for one OpenSSL does not name.
fn openssl_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => other.as_str().unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_of_the_provider_has_a_name() {
        for suite in &provider().cipher_suites {
            assert!(
                !openssl_name(suite.suite()).is_empty(),
                "{:?}",
                suite.suite()
            );
        }
    }

    #[test]
    fn a_pem_section_is_found_by_its_label() {
        let text = b"junk\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let section = pem_section(text, "ENCRYPTED PRIVATE KEY").expect("present");
        assert!(section.starts_with("-----BEGIN"));
        assert!(section.ends_with("KEY-----"));
        assert!(pem_section(text, "CERTIFICATE").is_none());
    }

    #[test]
    fn an_io_error_loses_its_os_error_number() {
        let error = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_reason(&error), "No such file or directory");
    }
}
