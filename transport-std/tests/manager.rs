//! Manager: listeners and writers by address, from many threads.

mod common;

use std::sync::{Arc, mpsc};
use std::thread;

use buffstreams_transport_std::{Error, ListenerConfig, Manager, WriterConfig};
use common::LONG;

#[test]
fn open_write_close_reopen() {
    let m: Manager = Manager::new();
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let addr = m
        .start_listening("127.0.0.1:0", ListenerConfig::new(), move |b: &[u8]| {
            Ok(tx.send(b.to_vec())?)
        })
        .unwrap();
    assert!(matches!(
        m.start_listening(addr, ListenerConfig::new(), |_: &[u8]| Ok(())),
        Err(Error::AlreadyOpen(a)) if a == addr
    ));
    assert!(matches!(m.write(addr, b"x"), Err(Error::NotOpen(_))));
    m.dial(addr, WriterConfig::new()).unwrap();
    assert!(matches!(
        m.dial(addr, WriterConfig::new()),
        Err(Error::AlreadyOpen(_))
    ));
    assert_eq!(m.write(addr, b"hello").unwrap(), 9);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"hello");
    // The manager held the only handle: closed now, with its final counters.
    let closed = m.close_writer(addr).unwrap().expect("closed at once");
    assert_eq!(closed.messages_out, 1);
    assert!(matches!(m.close_writer(addr), Err(Error::NotOpen(_))));
    assert!(matches!(m.write(addr, b"x"), Err(Error::NotOpen(_))));
    m.dial(addr, WriterConfig::new()).unwrap();
    let held = m.writer(addr).unwrap();
    m.write(addr, b"again").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"again");
    // Another handle is alive: forgotten by the manager and flushed, still open for it.
    assert!(m.close_writer(addr).unwrap().is_none());
    assert!(matches!(m.write(addr, b"x"), Err(Error::NotOpen(_))));
    held.write(b"still open").unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), b"still open");
    drop(held);
    m.close_listener(addr).unwrap();
    assert!(matches!(m.close_listener(addr), Err(Error::NotOpen(_))));
    // The address can be opened again.
    let again = m
        .start_listening(addr, ListenerConfig::new(), move |b: &[u8]| {
            Ok(tx2.send(b.to_vec())?)
        })
        .unwrap();
    assert_eq!(again, addr);
    assert_eq!(m.listeners(), vec![addr]);
}

#[test]
fn shared_between_threads_and_dropped() {
    let m: Arc<Manager> = Arc::new(Manager::new());
    let (tx, rx) = mpsc::channel();
    let addr = m
        .start_listening("127.0.0.1:0", ListenerConfig::new(), move |b: &[u8]| {
            Ok(tx.send(b.to_vec())?)
        })
        .unwrap();
    m.dial(addr, WriterConfig::new()).unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let m = m.clone();
            thread::spawn(move || {
                for i in 0..1000u32 {
                    let mut msg = vec![t];
                    msg.extend_from_slice(&i.to_le_bytes());
                    m.write(addr, &msg).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Dropping the manager flushes its writers, then stops its listeners.
    drop(Arc::try_unwrap(m).expect("last reference"));
    let mut got = 0;
    while rx.recv_timeout(LONG).is_ok() {
        got += 1;
        if got == 4000 {
            break;
        }
    }
    assert_eq!(got, 4000);
    // The port is free: the listener is gone.
    std::net::TcpListener::bind(addr).unwrap();
}
