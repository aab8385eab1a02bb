//! A `Writer` reading what the listener sends back (`WriterConfig::with_on_reply`): an echo
//! listener's replies all arrive, in order, while the writer streams far more than the
//! socket buffers hold (without a reader both sides would block); `close` waits for the last
//! ones; a listener that sends garbage gets its connection closed and the writer carries on
//! on a new one.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use buffstreams_transport_std::{Listener, ListenerConfig, Writer, WriterConfig};
use common::{LONG, frame};

#[test]
fn an_echo_listener_does_not_block_a_writer_that_reads_replies() {
    const N: u64 = 200_000;
    let server = Listener::<buffstreams_transport_std::BigEndian<4>>::bind(
        "127.0.0.1:0",
        ListenerConfig::new(),
    )
    .unwrap()
    .spawn_with_reply(|m, conn| {
        conn.reply(m)?;
        Ok(())
    })
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let (done, closed) = mpsc::channel();
    let writer: Writer = Writer::dial(
        server.local_addr(),
        WriterConfig::new()
            .with_on_reply(move |r| tx.lock().unwrap().send(r.to_vec()).unwrap())
            .with_reply_wait(LONG),
    )
    .unwrap();
    // 200,000 × 114 bytes is 22 MB: far beyond both sockets' buffers, so an unread reply
    // stream would stop the echo and then the writer.
    let checker = thread::spawn(move || {
        for i in 0..N {
            let reply = rx.recv_timeout(LONG).expect("reply missing");
            assert_eq!(reply, message(i), "reply {i}");
        }
        rx
    });
    // Written on a thread of its own: if replies stopped flowing, the checker fails (bounded)
    // while the writes block.
    thread::spawn(move || {
        for i in 0..N {
            writer.write(&message(i)).unwrap();
        }
        done.send(writer.close()).unwrap();
    });
    let rx = checker.join().unwrap();
    let stats = closed.recv_timeout(LONG).expect("close did not return");
    assert!(rx.try_recv().is_err(), "more replies than messages");
    assert_eq!((stats.messages_out, stats.replies), (N, N), "{stats:?}");
    let payload: u64 = (0..N).map(|i| message(i).len() as u64).sum();
    assert_eq!(stats.reply_bytes, payload, "{stats:?}");
    assert_eq!(stats.protocol_errors, 0, "{stats:?}");
    assert_eq!(server.shutdown().messages_out, N);
}

fn message(i: u64) -> Vec<u8> {
    let mut m = vec![0x5a; 110];
    m[..8].copy_from_slice(&i.to_be_bytes());
    m
}

#[test]
fn a_bad_reply_closes_the_connection_and_the_writer_reconnects() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    // The first connection answers its first message with a header declaring 1 GB; the
    // second one echoes properly.
    let peer = thread::spawn(move || {
        let mut got = Vec::new();
        for answer in [b"\x40\x00\x00\x00".to_vec(), frame(b"fine")] {
            let mut s = accept_within(&tcp);
            s.set_read_timeout(Some(LONG)).unwrap();
            let mut m = [0u8; 4 + 5];
            s.read_exact(&mut m).unwrap();
            got.push(m[4..].to_vec());
            s.write_all(&answer).unwrap();
            // Read until the writer closes this connection.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
        got
    });
    let replies = Arc::new(Mutex::new(Vec::new()));
    let seen = replies.clone();
    let writer: Writer = Writer::dial(
        addr,
        WriterConfig::new()
            .with_on_reply(move |r| seen.lock().unwrap().push(r.to_vec()))
            .with_reply_wait(LONG),
    )
    .unwrap();
    writer.write(b"first").unwrap();
    writer.flush();
    // The bad reply closes the first connection; the next message goes on a new one.
    let deadline = std::time::Instant::now() + LONG;
    while writer.stats().protocol_errors == 0 && std::time::Instant::now() < deadline {
        thread::sleep(std::time::Duration::from_millis(2));
    }
    writer.write(b"again").unwrap();
    let stats = writer.close();
    assert_eq!(
        peer.join().expect("the peer saw no second connection"),
        [b"first".to_vec(), b"again".to_vec()]
    );
    assert_eq!(*replies.lock().unwrap(), [b"fine".to_vec()]);
    assert_eq!(
        (stats.protocol_errors, stats.replies, stats.reconnects),
        (1, 1, 1),
        "{stats:?}"
    );
}

/// The next connection, or a panic after `LONG` (a writer that never reconnects).
fn accept_within(tcp: &TcpListener) -> std::net::TcpStream {
    tcp.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + LONG;
    loop {
        match tcp.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no connection within {LONG:?}"
                );
                thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}
