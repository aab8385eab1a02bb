//! Certificates for the TLS tests, made by the tests (rcgen; no private key is ever committed): a CA, server and client
//! certificates it signs, and the ones that must be refused (another CA, expired, wrong name).

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A certificate authority.
pub struct Ca {
    /// Its certificate.
    pub cert: CertificateDer<'static>,
    /// The same, PEM-encoded (for peers in other languages).
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A certificate chain and its key.
#[derive(Debug)]
pub struct Identity {
    /// The chain, the leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivatePkcs8KeyDer<'static>,
    /// The leaf certificate, PEM-encoded.
    pub cert_pem: String,
    /// The key, PEM-encoded (PKCS#8).
    pub key_pem: String,
}

impl Identity {
    /// The key, as rustls takes it.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// How a leaf certificate is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// For a listener (server authentication).
    Server,
    /// For a device (client authentication).
    Client,
    /// Valid for both, but only during 2020.
    Expired,
}

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (DNS names or IP addresses), with `cn` as its common name.
    pub fn leaf(&self, cn: &str, names: &[&str], kind: Leaf) -> Identity {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![match kind {
            Leaf::Client => ExtendedKeyUsagePurpose::ClientAuth,
            _ => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        if kind == Leaf::Expired {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        Arc::new(roots)
    }

    /// A server configuration with `id`; `clients`: the CA client certificates must chain
    /// to (mutual TLS), or none asked for.
    pub fn server(id: &Identity, clients: Option<&Ca>) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder();
        let builder = match clients {
            Some(ca) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder(ca.roots()).build().unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        Arc::new(
            builder
                .with_single_cert(id.chain.clone(), id.key())
                .unwrap(),
        )
    }

    /// A client configuration trusting this CA, presenting `id` if given.
    pub fn client(&self, id: Option<&Identity>) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder().with_root_certificates(self.roots());
        Arc::new(match id {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        })
    }
}

/// A listener's and a device's configurations for mutual TLS, from a CA of their own (the
/// listener's certificate names `localhost`): what a program that only needs both ends uses.
#[derive(Clone, Debug)]
pub struct MutualTls {
    /// The listener's: its certificate, a certificate from the CA required of clients.
    pub server: Arc<ServerConfig>,
    /// A device's: the CA as its roots, its certificate presented.
    pub client: Arc<ClientConfig>,
}

impl MutualTls {
    /// Both configurations, from a new CA called `ca_name`.
    pub fn new(ca_name: &str) -> Self {
        let ca = Ca::new(ca_name);
        let server = ca.leaf("listener", &["localhost"], Leaf::Server);
        let device = ca.leaf("device", &[], Leaf::Client);
        Self {
            server: Ca::server(&server, Some(&ca)),
            client: ca.client(Some(&device)),
        }
    }
}

/// A server name for `WriterConfig::with_tls`.
pub fn name(n: &str) -> ServerName<'static> {
    ServerName::try_from(n.to_string()).unwrap()
}
