//! The lane protocol under the `loom` model checker: every interleaving of the threads (up to
//! a preemption bound) and every value a weak load may return, with each buffer byte a
//! tracked cell, so a read that races a write is reported. The code under test is the real
//! `Lane` / `Lanes`: `writer/sync.rs` swaps in loom's atomics and mutexes, `buf.rs` its cells
//! and `claims.rs` its thread-locals; the fence pair runs its portable path (a `SeqCst` fence on
//! both sides), which is what `membarrier` strengthens.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p buffstreams-transport-std --lib --release writer::lane::loom
//! ```

use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};

use buffstreams_framing::{BigEndian, Config, Encoder, Header};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{Lane, Lanes, Sink, Waker};
use crate::writer::barrier;

/// Explores every execution of `f` (no preemption bound: these models are small enough)
/// and reports how many there were.
fn check(f: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let mut model = loom::model::Builder::new();
    model.preemption_bound = None;
    model.check(move || {
        counted.fetch_add(1, Relaxed);
        f()
    });
    eprintln!("explored {} executions", runs.load(Relaxed));
}

/// Lanes of 8 bytes (two frames of 3: the third does not fit), their buffers allocated.
/// (The real code allocates a lane's buffer when a thread first claims it, through a
/// `std` `OnceLock`, which the model cannot see into: a sender would find no buffer and
/// return before touching anything the model tracks.)
fn lanes() -> std::sync::Arc<Lanes> {
    let lanes = Lanes::new(16, std::sync::Arc::new(Waker::default()));
    for lane in lanes.iter() {
        lane.allocate();
    }
    std::sync::Arc::new(lanes)
}

fn header(len: usize) -> Result<Header, buffstreams_framing::EncodeError> {
    Encoder::<BigEndian<1>>::new(Config::new()).header(len)
}

/// The frame of message `i`: a 1-byte header and two bytes of `i`.
fn frame(i: u8) -> [u8; 3] {
    [2, i, i]
}

/// Puts sent bytes on `wire`, checking that the frame count sent with them is right (three
/// bytes a frame): bytes and count come from one atomic, however the threads interleave.
fn take(wire: &Mutex<Vec<u8>>, bytes: &[u8], frames: u32) {
    assert_eq!(
        bytes.len(),
        3 * frames as usize,
        "the frame count sent with the bytes"
    );
    wire.lock().unwrap().extend_from_slice(bytes);
}

/// Appends message `i` on the calling thread's lane; bytes the producer sends itself go to
/// `wire`.
fn write(lanes: &Lanes, i: u8, wire: &Mutex<Vec<u8>>) -> usize {
    let (_, lane) = lanes
        .append([[i, i]], header, |b: &[u8], n| take(wire, b, n))
        .unwrap();
    lanes.iter().position(|l| std::ptr::eq(l, lane)).unwrap()
}

/// A sink that takes a full lane's buffer over, as the acknowledged writer's does: the lane
/// continues in a spare (filled with `0xff`, so a read of it before the producer wrote would
/// show on the wire), and the frames handed over go to `wire`.
struct Taker<'a>(&'a Mutex<Vec<u8>>);

impl Sink for Taker<'_> {
    fn send(&mut self, bytes: &[u8], frames: u32) {
        take(self.0, bytes, frames);
    }

    fn spare(&mut self, len: usize) -> Option<Box<[u8]>> {
        Some(vec![0xff; len].into_boxed_slice())
    }

    fn hand_over(&mut self, buf: Box<[u8]>, range: std::ops::Range<usize>, frames: u32) {
        take(self.0, &buf[range], frames);
    }
}

/// As [`write`], the full lane's buffer handed over to the sink.
fn write_handing_over(lanes: &Lanes, i: u8, wire: &Mutex<Vec<u8>>) -> usize {
    let (_, lane) = lanes.append([[i, i]], header, Taker(wire)).unwrap();
    lanes.iter().position(|l| std::ptr::eq(l, lane)).unwrap()
}

fn lane0(lanes: &Lanes) -> &Lane {
    lanes.iter().next().unwrap()
}

/// A producer publishes three frames (the third one only after sending the first two
/// itself, from a full lane) while two senders take what is published: every byte arrives
/// once and in order, and no byte is read while it is written.
#[test]
fn a_producer_and_two_senders_pass_every_frame_once_in_order() {
    producer_and_two_senders(write);
}

/// The same with the full buffer handed over (the acknowledged writer's way): the lane
/// continues in another buffer, which the senders must find only through `tx`.
#[test]
fn a_producer_handing_its_full_buffer_over_and_two_senders_pass_every_frame_once_in_order() {
    producer_and_two_senders(write_handing_over);
}

fn producer_and_two_senders(write: fn(&Lanes, u8, &Mutex<Vec<u8>>) -> usize) {
    check(move || {
        let lanes = lanes();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let producer = {
            let (lanes, wire) = (lanes.clone(), wire.clone());
            thread::spawn(move || {
                for i in 1..=3 {
                    assert_eq!(write(&lanes, i, &wire), 0);
                }
            })
        };
        // Two senders, as the flusher and a thread calling `flush` are.
        let sender = {
            let (lanes, wire) = (lanes.clone(), wire.clone());
            thread::spawn(move || {
                lane0(&lanes).send_pending(|b, n| take(&wire, b, n));
            })
        };
        lane0(&lanes).send_pending(|b, n| take(&wire, b, n));
        producer.join().unwrap();
        sender.join().unwrap();
        lane0(&lanes).send_pending(|b, n| take(&wire, b, n));
        assert!(!lane0(&lanes).has_pending());
        let want: Vec<u8> = (1..=3).flat_map(frame).collect();
        assert_eq!(*wire.lock().unwrap(), want);
    });
}

/// The wake-up handshake between a producer and the flusher: the flusher, finding the lane
/// quiet, asks for a wake-up and looks again after its barrier; the producer publishes and
/// then takes the request. One of them must see the other: either the flusher's second look
/// finds the message, or the producer wakes it. Otherwise the message would wait for the
/// next timer, or for ever.
#[test]
fn a_published_message_is_never_missed_by_both_sides() {
    check(|| {
        let lanes = lanes();
        let wire = Mutex::new(Vec::new());
        // This thread is the producer: it claims lane 0, which the flusher has since seen
        // quiet and drained, with no wake-up request pending.
        write(&lanes, 0, &wire);
        let lane = lane0(&lanes);
        lane.send_pending(|_, _| {});
        lane.wake_me.store(false, Relaxed);
        let flusher = {
            let lanes = lanes.clone();
            thread::spawn(move || {
                // As in `flusher.rs`: look, ask, force the stores out, look again.
                let lane = lane0(&lanes);
                lane.has_pending() || {
                    lane.wake_me.store(true, SeqCst);
                    assert!(barrier::heavy());
                    lane.has_pending()
                }
            })
        };
        assert_eq!(write(&lanes, 1, &wire), 0);
        let woken = lane.take_wake_request();
        let seen = flusher.join().unwrap();
        assert!(
            seen || woken,
            "the message was published and nobody noticed"
        );
    });
}

/// A thread exits with a message in its lane; the flusher sends it and recycles the lane
/// while another thread starts writing and may claim that very lane. Every frame arrives
/// once, whole, and the recycled lane starts clean.
#[test]
fn a_released_lane_is_drained_then_handed_to_the_next_thread() {
    check(|| {
        let lanes = lanes();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let first = {
            let (lanes, wire) = (lanes.clone(), wire.clone());
            thread::spawn(move || assert_eq!(write(&lanes, 1, &wire), 0))
        };
        first.join().unwrap();
        let flusher = {
            let (lanes, wire) = (lanes.clone(), wire.clone());
            thread::spawn(move || {
                let lane = lane0(&lanes);
                if lane.ticket.released.load(Acquire) {
                    lane.send_pending(|b, n| take(&wire, b, n));
                    lane.recycle();
                }
            })
        };
        let next = {
            let (lanes, wire) = (lanes.clone(), wire.clone());
            thread::spawn(move || write(&lanes, 2, &wire))
        };
        flusher.join().unwrap();
        let took = next.join().unwrap();
        for lane in lanes.iter() {
            lane.send_pending(|b, n| take(&wire, b, n));
        }
        let wire = wire.lock().unwrap().clone();
        // Lane 0 once recycled, else the next free one.
        assert!(took <= 1, "lane {took}");
        let mut frames: Vec<&[u8]> = wire.chunks(3).collect();
        frames.sort();
        assert_eq!(frames, [&frame(1)[..], &frame(2)[..]]);
    });
}
