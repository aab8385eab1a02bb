//! The lane protocol under proptest and real threads.

use super::*;
use buffstreams_framing::{BigEndian, Config, Encoder};
use proptest::prelude::*;
use std::sync::mpsc;
use std::thread;

fn frames(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// Splits `bytes` into whole frames; fails on a cut frame.
fn whole_frames(bytes: &[u8]) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + len;
        n += 1;
    }
    assert_eq!(at, bytes.len(), "a send cut a frame");
    n
}

/// Collects what a lane sends. With `hand_over`, it takes full buffers over as the
/// acknowledged writer does, giving spares full of junk (a frame the lane failed to carry
/// into its next buffer would show on the wire).
struct Collect<F: FnMut(Vec<u8>, u32)> {
    out: F,
    hand_over: bool,
}

impl<F: FnMut(Vec<u8>, u32)> Sink for Collect<F> {
    fn send(&mut self, bytes: &[u8], count: u32) {
        (self.out)(bytes.to_vec(), count);
    }

    fn spare(&mut self, len: usize) -> Option<Box<[u8]>> {
        self.hand_over.then(|| vec![0xab; len].into_boxed_slice())
    }

    fn hand_over(&mut self, buf: Box<[u8]>, range: std::ops::Range<usize>, count: u32) {
        (self.out)(buf[range].to_vec(), count);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<usize>),
    SendPending,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(0usize..200, 1..6).prop_map(Op::Append),
        1 => Just(Op::SendPending),
    ]
}

/// Under Miri every step is interpreted: fewer cases and shorter runs there, the same checks.
const MIRI: bool = cfg!(miri);

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if MIRI { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any sequence of appends (single messages and batches, some larger than the lane)
    /// and sends, full buffers sent from or handed over: the bytes sent are exactly the
    /// frames in order, every send holds whole frames (one at least) and says how many, and
    /// only a batch larger than the lane makes a send larger than the lane.
    #[test]
    fn sends_are_the_frames_in_order(
        ops in prop::collection::vec(op(), 1..60),
        cap in 16usize..700,
        hand_over in any::<bool>(),
    ) {
        let lanes = Lanes::new(cap, Arc::new(Waker::default()));
        let enc = Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(1000));
        let mut sent: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut big_batches: Vec<Vec<u8>> = Vec::new();
        let mut lane_cap = 0;
        for (k, op) in ops.iter().enumerate() {
            match op {
                Op::Append(sizes) => {
                    let batch: Vec<Vec<u8>> =
                        sizes.iter().map(|&n| vec![k as u8; n]).collect();
                    let (done, lane) = lanes
                        .append(
                            &batch,
                            |n| enc.header(n),
                            Collect { out: |b, n| sent.push((b, n)), hand_over },
                        )
                        .unwrap();
                    lane_cap = lane.cap;
                    prop_assert_eq!(done.messages, batch.len() as u64);
                    prop_assert_eq!(done.bytes, frames(&batch).len());
                    if done.bytes > lane_cap {
                        big_batches.push(frames(&batch));
                    }
                    written.extend(batch);
                }
                Op::SendPending => {
                    for lane in lanes.iter() {
                        lane.send_pending(|b, n| sent.push((b.to_vec(), n)));
                    }
                }
            }
        }
        for lane in lanes.iter() {
            lane.send_pending(|b, n| sent.push((b.to_vec(), n)));
            prop_assert!(!lane.has_pending());
        }
        for (s, n) in &sent {
            prop_assert!(*n > 0, "an empty send (a sender had taken everything)");
            prop_assert_eq!(whole_frames(s), *n as usize, "the frame count sent with the bytes");
            prop_assert!(s.len() <= lane_cap || big_batches.contains(s));
        }
        let bytes: Vec<Vec<u8>> = sent.into_iter().map(|(s, _)| s).collect();
        prop_assert_eq!(bytes.concat(), frames(&written));
        let total: u64 = lanes.iter().map(Lane::messages).sum();
        prop_assert_eq!(total, written.len() as u64);
    }
}

/// A producer and a sender on two threads: every frame arrives once, in order, whole.
#[test]
fn concurrent_producer_and_sender() {
    producer_and_sender(false);
}

/// The same with full buffers handed over (the acknowledged writer's way): the sender finds
/// the lane's current buffer under its send lock while the producer replaces it.
#[test]
fn concurrent_producer_handing_buffers_over_and_sender() {
    producer_and_sender(true);
}

fn producer_and_sender(hand_over: bool) {
    let lanes = Arc::new(Lanes::new(1024, Arc::new(Waker::default())));
    let enc = Encoder::<BigEndian<4>>::new(Config::new());
    let (tx, rx) = mpsc::channel::<(Vec<u8>, u32)>();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (lanes, tx, stop) = (lanes.clone(), tx.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                for lane in lanes.iter() {
                    lane.send_pending(|b, n| tx.send((b.to_vec(), n)).unwrap());
                }
            }
        })
    };
    let mut written = Vec::new();
    for i in 0..if MIRI { 300 } else { 200_000u32 } {
        let m = i.to_le_bytes().repeat(1 + (i % 7) as usize);
        let out = |b, n| tx.send((b, n)).unwrap();
        lanes
            .append([&m], |n| enc.header(n), Collect { out, hand_over })
            .unwrap();
        written.push(m);
    }
    stop.store(true, Ordering::Release);
    sender.join().unwrap();
    for lane in lanes.iter() {
        lane.send_pending(|b, n| tx.send((b.to_vec(), n)).unwrap());
    }
    drop(tx);
    let sent: Vec<(Vec<u8>, u32)> = rx.iter().collect();
    for (s, n) in &sent {
        // The count came with the bytes, though the producer published both while this ran.
        assert_eq!(whole_frames(s), *n as usize);
    }
    let bytes: Vec<Vec<u8>> = sent.into_iter().map(|(s, _)| s).collect();
    assert_eq!(bytes.concat(), frames(&written));
}

/// A lane whose thread exited is handed to the next thread once recycled; until then
/// the next thread gets another lane (or the shared one).
#[test]
fn lanes_are_claimed_per_thread_and_recycled() {
    let lanes = Arc::new(Lanes::new(3 * LANE_CAP, Arc::new(Waker::default())));
    let enc = Encoder::<BigEndian<4>>::new(Config::new());
    let index =
        |lanes: &Lanes, lane: &Lane| lanes.iter().position(|l| std::ptr::eq(l, lane)).unwrap();
    let claim = |lanes: Arc<Lanes>| {
        thread::spawn(move || {
            let (_, lane) = lanes
                .append([b"m"], |n| enc.header(n), |_: &[u8], _| {})
                .unwrap();
            index(&lanes, lane)
        })
        .join()
        .unwrap()
    };
    assert_eq!(lanes.iter().len(), 3);
    assert_eq!(claim(lanes.clone()), 0);
    // Lane 0 is released (its thread exited) but not recycled yet.
    assert!(
        lanes
            .iter()
            .next()
            .unwrap()
            .ticket
            .released
            .load(Ordering::Acquire)
    );
    assert_eq!(claim(lanes.clone()), 1);
    assert_eq!(
        claim(lanes.clone()),
        2,
        "no lane of its own left: the shared one"
    );
    let first = lanes.iter().next().unwrap();
    first.send_pending(|_, _| {});
    first.recycle();
    assert_eq!(claim(lanes.clone()), 0);
    // The same thread keeps its lane.
    let (_, a) = lanes
        .append([b"a"], |n| enc.header(n), |_: &[u8], _| {})
        .unwrap();
    let (_, b) = lanes
        .append([b"b"], |n| enc.header(n), |_: &[u8], _| {})
        .unwrap();
    assert!(std::ptr::eq(a, b));
}
