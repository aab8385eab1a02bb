//! embassy-net on the host, over the TAP device `tap0`, against transport-std on the kernel's
//! side of it: the library's `send_to` streams into a transport-std `Listener`, and a
//! transport-std `Writer` streams into the library's `receive_on`; every message checked on
//! both sides. Run it only inside a network namespace that has `tap0` up with
//! 192.168.69.100/24 (the test `tests/tap.rs` makes one): opening `tap0` elsewhere would
//! create it.
//!
//! ```text
//! embassy_tap [--count N]      (default 3000 each way)
//! ```
#![cfg(not(target_os = "none"))]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use buffstreams_embassy_example::{CONFIG, Error, Expected, MAX, message, receive_on, send_to};
use buffstreams_transport_std::{
    BigEndian, Listener, ListenerConfig, RetryPolicy, Writer, WriterConfig,
};
use embassy_executor::{Executor, Spawner};
use embassy_net::{Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;

/// The embassy side's address; the kernel's side of `tap0` is 192.168.69.100.
const EMBASSY: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
const KERNEL: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 100);
/// The port `receive_on` listens on.
const PORT: u16 = 5032;

static SENT: OnceLock<Result<(), Error>> = OnceLock::new();
static RECEIVED: OnceLock<Result<u32, Error>> = OnceLock::new();

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn send_task(stack: Stack<'static>, server: SocketAddr, count: u32) {
    stack.wait_config_up().await;
    let (rx, tx) = (buffer(), buffer());
    let SocketAddr::V4(v4) = server else {
        let _ = SENT.set(Err(Error::Short(0)));
        return;
    };
    let _ = SENT.set(send_to(stack, (*v4.ip(), v4.port()), rx, tx, count).await);
}

#[embassy_executor::task]
async fn receive_task(stack: Stack<'static>, count: u32) {
    let (rx, tx) = (buffer(), buffer());
    let _ = RECEIVED.set(receive_on(stack, PORT, rx, tx, count).await);
}

/// A socket buffer for a task (they live as long as the program).
fn buffer() -> &'static mut [u8] {
    Box::leak(vec![0u8; 16 * 1024].into_boxed_slice())
}

fn main() -> ExitCode {
    let count: u32 = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => 3000,
        [flag, n] if flag == "--count" => match n.parse() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("embassy_tap: --count {n}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: embassy_tap [--count N]");
            return ExitCode::from(2);
        }
    };
    // Nothing here may hang a CI run.
    thread::spawn(|| {
        thread::sleep(Duration::from_secs(120));
        eprintln!("embassy_tap: not done after 120 s");
        std::process::exit(3);
    });
    match run(count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embassy_tap: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(count: u32) -> Result<(), String> {
    let started = Instant::now();
    // transport-std's Listener on the kernel's side, checking every message in order.
    let checked = Arc::new(Mutex::new(Expected::default()));
    let listener =
        Listener::<BigEndian<4>>::bind((KERNEL, 0), ListenerConfig::new().with_framing(CONFIG))
            .map_err(|e| format!("cannot listen on {KERNEL}: {e}"))?;
    let server = {
        let checked = checked.clone();
        listener
            .spawn(move |m: &[u8]| {
                checked.lock().unwrap_or_else(|e| e.into_inner()).check(m);
                Ok(())
            })
            .map_err(|e| format!("cannot start the listener: {e}"))?
    };
    let server_addr = server.local_addr();

    // transport-std's Writer into the embassy side, once it listens (the dial retries).
    let writer = thread::spawn(move || {
        let retry = RetryPolicy::new()
            .with_max_attempts(Some(100))
            .with_initial_backoff(Duration::from_millis(20))
            .with_max_backoff(Duration::from_millis(200))
            .with_deadline(Some(Duration::from_secs(30)));
        let config = WriterConfig::new().with_framing(CONFIG).with_retry(retry);
        let w: Writer = Writer::dial((EMBASSY, PORT), config).map_err(|e| e.to_string())?;
        let mut buf = [0u8; MAX];
        for i in 0..count {
            w.write(message(i, &mut buf)).map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(w.close())
    });

    // embassy-net on tap0, and the two exchanges.
    let device = TunTapDevice::new("tap0").map_err(|e| format!("cannot open tap0: {e}"))?;
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(EMBASSY, 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let resources = Box::leak(Box::new(StackResources::<4>::new()));
    let (stack, runner) = embassy_net::new(device, config, resources, 0x5eed_u64);
    let executor = Box::leak(Box::new(Executor::new()));
    executor.run_until(
        |spawner: Spawner| {
            spawner.spawn(net_task(runner).expect("the net task's pool"));
            spawner.spawn(receive_task(stack, count).expect("the receive task's pool"));
            spawner.spawn(send_task(stack, server_addr, count).expect("the send task's pool"));
        },
        || SENT.get().is_some() && RECEIVED.get().is_some(),
    );

    let (sent, received) = (SENT.get(), RECEIVED.get());
    println!("transport-std Writer → embassy: receive_on {received:?}");
    if received != Some(&Ok(count)) {
        // The writer may still be retrying into a closed port: not worth waiting for.
        return Err(format!("writer → embassy incomplete: {received:?}"));
    }
    let writer = writer
        .join()
        .map_err(|_| "the writer thread panicked".to_string())?;
    println!("  writer: {writer:?}");
    let writer = writer?;
    if writer.dead_lettered != 0 || writer.messages_out != u64::from(count) {
        return Err(format!("the writer did not deliver everything: {writer:?}"));
    }
    let stats = server.shutdown();
    let (arrived, first_bad) = {
        let checked = checked.lock().unwrap_or_else(|e| e.into_inner());
        (checked.count(), checked.first_wrong())
    };
    println!("embassy → transport-std Listener: send_to {sent:?}, {arrived} of {count} arrived");
    println!("both ways in {:?}", started.elapsed());
    if let Some(i) = first_bad {
        return Err(format!(
            "message {i} arrived at the listener with other bytes"
        ));
    }
    if sent != Some(&Ok(())) || arrived != count || stats.protocol_errors != 0 {
        return Err(format!("embassy → listener incomplete: {stats:?}"));
    }
    println!("{count} messages each way, every byte checked");
    Ok(())
}
