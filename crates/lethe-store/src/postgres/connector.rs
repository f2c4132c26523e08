//! How this process reaches the database: the connection settings, the
//! schema every connection is pointed at, and TLS when the URL asks for it.
//!
//! TLS is used when the URL says `sslmode=require`, and then it is verified
//! as libpq's `verify-full` would: the server's certificate must chain to
//! the system's trust store or to `[store] ca_file`, and name the host the
//! URL connects to. `require` without verification would let anyone on the
//! path between node and database read personal fields and keys in flight;
//! a compliance product should not offer that. Without `sslmode=require`
//! (`disable`, or libpq's default `prefer`) the connection is plain: a
//! `prefer` that silently fell back to plaintext on a certificate problem
//! would be worse than saying plainly which one was asked for.

use std::path::Path;
use std::sync::Arc;

use postgres::config::SslMode;
use postgres::{Client, NoTls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{db, quote_ident};
use crate::{Result, StoreError};

/// Everything needed to open one more connection to the store's schema.
#[derive(Clone)]
pub(super) struct Connector {
    config: postgres::Config,
    schema: String,
    /// The TLS setup, when the URL asked for TLS.
    tls: Option<MakeRustlsConnect>,
}

impl Connector {
    /// Reads `url` and, when it asks for TLS, the trust roots: the system's
    /// and, if given, the certificates in `ca_file` (PEM).
    pub(super) fn new(url: &str, schema: &str, ca_file: Option<&Path>) -> Result<Connector> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Misuse(format!("store.url is not a PostgreSQL connection string: {e}")))?;
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(tls_setup(ca_file)?),
            _ if ca_file.is_some() => {
                return Err(StoreError::Misuse(
                    "store.ca_file is set but store.url does not ask for TLS: add sslmode=require to the URL".into(),
                ))
            }
            _ => None,
        };
        Ok(Connector {
            config,
            schema: schema.to_string(),
            tls,
        })
    }

    /// A new connection, its search path not yet set (the schema may not
    /// exist yet).
    pub(super) fn connect_raw(&self) -> Result<Client> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()).map_err(db),
            None => self.config.connect(NoTls).map_err(db),
        }
    }

    /// A new connection pointed at the store's schema.
    pub(super) fn connect(&self) -> Result<Client> {
        let mut c = self.connect_raw()?;
        c.batch_execute(&format!(
            "SET search_path TO {}; SET application_name TO 'lethe'",
            quote_ident(&self.schema)
        ))
        .map_err(db)?;
        Ok(c)
    }
}

/// A rustls client that trusts the system's roots and `ca_file`'s.
fn tls_setup(ca_file: Option<&Path>) -> Result<MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    // The system's store may be missing or partly unreadable on a minimal
    // image; with a `ca_file` that is enough, without one the handshake
    // names the unknown issuer.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = read_ca_file(path)?;
        for cert in certs {
            roots.add(cert).map_err(|e| {
                StoreError::Misuse(format!(
                    "store.ca_file {}: a certificate is not usable: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Misuse(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file, refused when it holds none.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| StoreError::Misuse(format!("store.ca_file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(StoreError::Misuse(format!(
            "store.ca_file {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}
