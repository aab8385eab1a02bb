//! The TLS peers' certificates, made once per bench run (rcgen): a CA, the listener's
//! certificate for `localhost` and a device's client certificate. Both TLS peers use mutual
//! TLS with the same configurations, so they pay for the same handshake and cipher suite
//! (rustls's default: TLS 1.3, AES-256-GCM on x86-64).

use std::sync::{Arc, OnceLock};

use buffstreams_test_support::pki::{MutualTls, name};
use buffstreams_transport_std::rustls::pki_types::ServerName;
use buffstreams_transport_std::rustls::{ClientConfig, ServerConfig};

/// The listener's and the writer's configurations, and the name the listener's certificate
/// carries.
pub struct Tls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

/// The bench's TLS configurations (made on first use).
pub fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        let MutualTls { server, client } = MutualTls::new("bench CA");
        Tls {
            server,
            client,
            name: name("localhost"),
        }
    })
}
