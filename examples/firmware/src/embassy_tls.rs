//! The embassy image over TLS: the same board, stack and messages as `embassy.rs`, streamed
//! through a mutual TLS 1.3 connection (embedded-tls, TLS_AES_128_GCM_SHA256, key exchange
//! on P-256) to a transport-std `Listener` with `with_tls` at 10.0.2.100:5555, which checks
//! every message and the device's certificate.
//!
//! - **The listener is verified**: its P-256 certificate must chain to the CA compiled into
//!   the image and carry the name `localhost` (embedded-tls's `CertVerifier`). The board has no
//!   wall clock, so validity dates are not checked (`NoClock`); a device with an RTC or SNTP
//!   implements `TlsClock`.
//! - **The device is verified too**: it presents its certificate and signs the handshake with
//!   its P-256 key (compiled in here; on hardware, from protected flash or a secure element).
//! - **Randomness**: a ChaCha20 generator seeded per boot with 32 bytes from the host
//!   (semihosting reads QEMU's `/dev/urandom`). Real hardware seeds it from its TRNG; a
//!   device without one must not reuse a seed across boots.
//!
//! The certificates are compiled in from the directory `BUFFSTREAMS_FIRMWARE_PKI` names at
//! build time (`examples/tests/firmware.rs` makes them for each run): `ca.der`, `device.der`
//! and `device.key` (the private key's raw 32-byte P-256 scalar).
#![no_std]
#![no_main]

use buffstreams_embassy_example::{CONFIG, Header, MAX, message};
use buffstreams_firmware::{board_init, exit, host_random, millis};
use buffstreams_framing::{AsyncFrameWriter, Encoder};
use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embedded_tls::pki::CertVerifier;
use embedded_tls::{
    Aes128GcmSha256, Certificate, CryptoProvider, NoClock, SignatureScheme, TlsConfig,
    TlsConnection, TlsContext, TlsError, TlsVerifier,
};
use p256::ecdsa::{DerSignature, SigningKey};
use panic_semihosting as _;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, SeedableRng};
use static_cell::StaticCell;

#[path = "embassy_rt.rs"]
mod rt;

/// The CA the listener's certificate must chain to.
const CA: &[u8] = include_bytes!(concat!(env!("BUFFSTREAMS_FIRMWARE_PKI"), "/ca.der"));
/// The device's certificate and private key (mutual TLS).
const DEVICE_CERT: &[u8] = include_bytes!(concat!(env!("BUFFSTREAMS_FIRMWARE_PKI"), "/device.der"));
const DEVICE_KEY: &[u8; 32] =
    include_bytes!(concat!(env!("BUFFSTREAMS_FIRMWARE_PKI"), "/device.key"));

/// Messages to stream.
const COUNT: u32 = 2000;
/// The run fails after this long.
const DEADLINE_MS: u32 = 120_000;
/// Room for the listener's certificate while it is verified.
const CERT_SIZE: usize = 2048;

/// What embedded-tls asks of the device: randomness, the listener's verifier, the device's
/// certificate and signing key.
struct Device {
    rng: ChaCha20Rng,
    verifier: CertVerifier<'static, Aes128GcmSha256, NoClock, CERT_SIZE>,
}

impl CryptoProvider for Device {
    type CipherSuite = Aes128GcmSha256;
    type Signature = DerSignature;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }

    fn signer(
        &mut self,
    ) -> Result<(impl signature::SignerMut<Self::Signature>, SignatureScheme), TlsError> {
        let key = SigningKey::from_slice(DEVICE_KEY).map_err(|_| TlsError::InvalidPrivateKey)?;
        Ok((key, SignatureScheme::EcdsaSecp256r1Sha256))
    }

    fn client_cert(&mut self) -> Option<Certificate<impl AsRef<[u8]>>> {
        Some(Certificate::X509(DEVICE_CERT))
    }
}

/// What went wrong (printed with `{:?}`, which dead-code analysis does not count as a read).
#[derive(Debug)]
#[allow(dead_code)]
enum Failed {
    Connect(embassy_net::tcp::ConnectError),
    Tls(TlsError),
    Write(buffstreams_framing::WriteError<TlsError>),
    Close(embassy_net::tcp::Error),
}

/// Dials the listener, opens mutual TLS, streams messages `0..COUNT` through the framing
/// crate's `AsyncFrameWriter` over the TLS connection, and closes it (close_notify, then the
/// TCP close acknowledged).
async fn stream(stack: Stack<'static>, seed: [u8; 32]) -> Result<(), Failed> {
    static RX: StaticCell<[u8; 8192]> = StaticCell::new();
    static TX: StaticCell<[u8; 8192]> = StaticCell::new();
    // A whole TLS record (16 KiB and its overhead) must fit the read buffer; writes are split
    // into records of the write buffer's size.
    static RECORD_IN: StaticCell<[u8; 16_640]> = StaticCell::new();
    static RECORD_OUT: StaticCell<[u8; 4096]> = StaticCell::new();
    let (rx, tx) = (RX.init([0; 8192]), TX.init([0; 8192]));
    let mut socket = TcpSocket::new(stack, rx, tx);
    socket
        .connect((Ipv4Address::new(10, 0, 2, 100), 5555))
        .await
        .map_err(Failed::Connect)?;
    let mut tls: TlsConnection<'_, _, Aes128GcmSha256> = TlsConnection::new(
        socket,
        RECORD_IN.init([0; 16_640]),
        RECORD_OUT.init([0; 4096]),
    );
    let config = TlsConfig::new().with_server_name("localhost");
    let device = Device {
        rng: ChaCha20Rng::from_seed(seed),
        verifier: CertVerifier::new(Certificate::X509(CA)),
    };
    let shook = millis();
    tls.open(TlsContext::new(&config, device))
        .await
        .map_err(Failed::Tls)?;
    hprintln!(
        "tls firmware: handshake done in {} ms (mutual TLS 1.3, emulated Cortex-M3)",
        millis().wrapping_sub(shook)
    );
    let mut out = AsyncFrameWriter::new(tls, Encoder::<Header>::new(CONFIG), [0u8; 1536]);
    let mut buf = [0u8; MAX];
    for i in 0..COUNT {
        out.write_frame(message(i, &mut buf))
            .await
            .map_err(Failed::Write)?;
    }
    out.flush().await.map_err(Failed::Write)?;
    let mut socket = out
        .into_inner()
        .close()
        .await
        .map_err(|(_, e)| Failed::Tls(e))?;
    socket.close();
    // Returns once the FIN and everything before it are acknowledged.
    socket.flush().await.map_err(Failed::Close)
}

#[embassy_executor::task]
async fn app(stack: Stack<'static>, seed: [u8; 32]) {
    stack.wait_config_up().await;
    let start = millis();
    let sent = stream(stack, seed).await;
    rt::report("tls firmware", " over TLS", COUNT, start, &sent);
}

#[entry]
fn main() -> ! {
    let device = board_init("tls firmware");
    let Some(seed) = host_random::<32>() else {
        hprintln!("tls firmware: no random seed from the host");
        exit(false)
    };
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
        gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
        dns_servers: Default::default(),
    });
    static RESOURCES: StaticCell<StackResources<2>> = StaticCell::new();
    let net_seed = u64::from_le_bytes([
        seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
    ]);
    // The TLS generator gets its own seed, not the one the network stack sees.
    let tls_seed = host_random::<32>().unwrap_or_else(|| exit(false));
    let (stack, runner) = embassy_net::new(
        device,
        config,
        RESOURCES.init(StackResources::new()),
        net_seed,
    );
    rt::run("tls firmware", DEADLINE_MS, |spawner| {
        match (rt::net_task(runner), app(stack, tls_seed)) {
            (Ok(net), Ok(app)) => {
                spawner.spawn(net);
                spawner.spawn(app);
            }
            _ => exit(false),
        }
    })
}
