//! The project README, compiled and run as doc-tests so its examples stay true.
#![doc = include_str!("../../README.md")]

/// What the example programs share on their command lines (parsed with `clap`).
pub mod cli {
    use std::fmt::Display;
    use std::process::ExitCode;

    /// Where `server` listens and `client` dials by default, so the two meet without flags.
    pub const DEFAULT_ADDR: &str = "127.0.0.1:5031";

    /// The header format of `server` and `client`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
    pub enum Format {
        /// A 4-byte big-endian length: tokio-util's `LengthDelimitedCodec`, Netty's
        /// `LengthFieldPrepender(4)`.
        #[default]
        Bigendian,
        /// Go BuffStreams' 3-byte zigzag varint (its default 4096-byte maximum).
        Buffstreams,
    }

    impl Format {
        /// The other format: what a peer probably uses when our header does not parse.
        pub fn other(self) -> Self {
            match self {
                Self::Bigendian => Self::Buffstreams,
                Self::Buffstreams => Self::Bigendian,
            }
        }

        /// The name on the command line.
        pub fn name(self) -> &'static str {
            match self {
                Self::Bigendian => "bigendian",
                Self::Buffstreams => "buffstreams",
            }
        }
    }

    /// Mutual TLS on the command line (`server` and `client`): PEM files of the CA the peer's
    /// certificate must chain to, and of this side's certificate and key.
    #[derive(Clone, Debug, Default, clap::Args)]
    pub struct TlsArgs {
        /// Mutual TLS: the CA (PEM) the peer's certificate must chain to; needs --cert and
        /// --key [default: none, plain TCP].
        #[arg(long, value_name = "PEM", requires_all = ["cert", "key"])]
        pub ca: Option<std::path::PathBuf>,
        /// This side's certificate chain (PEM), for mutual TLS [default: none].
        #[arg(long, value_name = "PEM", requires = "ca")]
        pub cert: Option<std::path::PathBuf>,
        /// This side's private key (PEM), for mutual TLS [default: none].
        #[arg(long, value_name = "PEM", requires = "ca")]
        pub key: Option<std::path::PathBuf>,
    }

    impl TlsArgs {
        /// The files read: the CA as roots, this side's chain and key; `None` without `--ca`.
        fn load(&self) -> Result<Option<Identity>, String> {
            use buffstreams_transport_std::rustls::pki_types::pem::PemObject;
            use buffstreams_transport_std::rustls::pki_types::{CertificateDer, PrivateKeyDer};
            let (Some(ca), Some(cert), Some(key)) = (&self.ca, &self.cert, &self.key) else {
                return Ok(None);
            };
            let read = |path: &std::path::Path| {
                CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
            };
            let mut roots = buffstreams_transport_std::rustls::RootCertStore::empty();
            for c in read(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            Ok(Some(Identity {
                roots: std::sync::Arc::new(roots),
                chain: read(cert)?,
                key,
            }))
        }

        /// The listener's TLS configuration: its certificate, and one from the CA required of
        /// every client; `None` without `--ca`.
        ///
        /// # Errors
        /// A file that cannot be read or a certificate rustls refuses, in words.
        pub fn server(
            &self,
        ) -> Result<Option<std::sync::Arc<buffstreams_transport_std::rustls::ServerConfig>>, String>
        {
            use buffstreams_transport_std::rustls::{ServerConfig, server::WebPkiClientVerifier};
            let Some(id) = self.load()? else {
                return Ok(None);
            };
            let verifier = WebPkiClientVerifier::builder(id.roots)
                .build()
                .map_err(|e| e.to_string())?;
            let config = ServerConfig::builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(id.chain, id.key)
                .map_err(|e| e.to_string())?;
            Ok(Some(std::sync::Arc::new(config)))
        }

        /// A writer's TLS configuration: the CA as its roots, its certificate presented;
        /// `None` without `--ca`.
        ///
        /// # Errors
        /// As [`server`](Self::server).
        pub fn client(
            &self,
        ) -> Result<Option<std::sync::Arc<buffstreams_transport_std::rustls::ClientConfig>>, String>
        {
            let Some(id) = self.load()? else {
                return Ok(None);
            };
            let config = buffstreams_transport_std::rustls::ClientConfig::builder()
                .with_root_certificates(id.roots)
                .with_client_auth_cert(id.chain, id.key)
                .map_err(|e| e.to_string())?;
            Ok(Some(std::sync::Arc::new(config)))
        }
    }

    /// What the PEM files of [`TlsArgs`] hold.
    struct Identity {
        roots: std::sync::Arc<buffstreams_transport_std::rustls::RootCertStore>,
        chain: Vec<buffstreams_transport_std::rustls::pki_types::CertificateDer<'static>>,
        key: buffstreams_transport_std::rustls::pki_types::PrivateKeyDer<'static>,
    }

    /// Parses `--addr`: `HOST:PORT` (a name or an address, and a port number), so a missing
    /// port is a usage error that says what is expected rather than a failed connect.
    pub fn host_port(s: &str) -> Result<String, String> {
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(s.to_string())
            }
            _ => Err(format!(
                "expected HOST:PORT, such as {DEFAULT_ADDR} or localhost:5031"
            )),
        }
    }

    /// Prints `program: what: why` to stderr and returns exit status 1: the programs' one
    /// shape of error (no backtrace, no debug formatting).
    pub fn fail(program: &str, what: impl Display, why: impl Display) -> ExitCode {
        eprintln!("{program}: {what}: {why}");
        ExitCode::FAILURE
    }

    /// Why an operation of the transport failed, in the words of the OS for socket errors:
    /// `address already in use`, `connection refused`.
    pub fn reason(e: &buffstreams_transport_std::Error) -> String {
        match e {
            buffstreams_transport_std::Error::Io(io) => io_reason(io),
            other => other.to_string(),
        }
    }

    /// An I/O error without its `(os error N)` suffix, starting in lower case.
    pub fn io_reason(e: &std::io::Error) -> String {
        let text = e.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => text.to_string(),
        }
    }

    /// A byte count for people: `1.8 GB`, `4.1 kB`, `12 bytes`.
    pub fn bytes(n: u64) -> String {
        match n {
            0..1_000 => format!("{n} bytes"),
            1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
            1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
            _ => format!("{:.1} GB", n as f64 / 1e9),
        }
    }

    /// A hint for a header that does not parse: what it declared and what the peer may be
    /// speaking instead. `format` is ours.
    pub fn format_hint(error: &buffstreams_framing::DecodeError, format: Format) -> String {
        let declared = match error {
            buffstreams_framing::DecodeError::FrameTooLong { len, .. } => {
                format!("a header declaring {}", bytes(*len))
            }
            other => format!("a header that does not parse ({other})"),
        };
        format!(
            "{declared}; is it using --format {}?",
            format.other().name()
        )
    }
}
