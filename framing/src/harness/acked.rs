//! The acknowledged mode's two machines against each other, over a channel a script breaks at
//! will: connections cut at any byte (what was in flight lost), bytes of an old connection
//! arriving long after a new one opened, the listener restarted with its sessions forgotten,
//! time jumping (welcomes and acknowledgements late, sessions expiring), full windows, the
//! writer giving up. Every delivery is checked as it happens, and after the script the
//! channel heals and everything must settle:
//!
//! - the number a listener gives a message is the one the writer gave it;
//! - within a session, no message is delivered before every earlier one was (no gap);
//! - a message delivered a second time is marked `may_repeat` (which only a listener that did
//!   not know the session may say);
//! - in the end every message is delivered or given up (dead-lettered), and the writer is
//!   settled.
//!
//! Used by the property test in `acked/tests.rs` and the `acked_session` fuzz target.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec;
use alloc::vec::Vec;

use crate::acked::{
    Batches, Epoch, OpenError, QueueError, Received, Receiver, Sender, SenderConfig, SessionId,
    SessionSlot, Sessions, Window, back_config,
};
use crate::{BigEndian, Config, Decoder, Encoder, Event};

extern crate std;

/// The header format of the harness's messages.
pub type H = BigEndian<4>;

/// How the harness queues a batch of whole frames into its sender: [`Sender::queue`] by
/// default; a transport with a store of its own passes its own way ([`Sender::queue_in`]).
pub type QueueBatch<W> = fn(&mut Sender<H, W>, &[u8], u32) -> Result<bool, QueueError>;

/// Cases for the property test: `PROPTEST_CASES` if set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One step of the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The writer's application queues up to this many messages (as room allows).
    Queue(u8),
    /// The writer opens a new connection (abandoning its current one, which stays readable).
    Connect,
    /// This many bytes of connection `conn` (an index among those opened, modulo their
    /// number) reach the listener.
    Up { conn: u8, bytes: u16 },
    /// This many bytes of connection `conn` reach the writer.
    Down { conn: u8, bytes: u16 },
    /// Connection `conn` breaks: all but the first `keep` bytes in flight each way are lost,
    /// then each side sees it end.
    Cut { conn: u8, keep: u16 },
    /// The listener's process dies and starts again, its sessions forgotten.
    Restart,
    /// Time passes (µs).
    Tick(u32),
    /// The writer gives up every message not acknowledged.
    GiveUp,
    /// The listener application's callback fails (panics) on the next message of connection
    /// `conn`: that connection ends, and the message is not delivered.
    Fail { conn: u8 },
}

impl Action {
    /// Reads a script from fuzzer bytes: one opcode byte and its arguments per action.
    pub fn script(mut bytes: &[u8]) -> Vec<Self> {
        let mut out = Vec::new();
        let mut take = |n: usize| -> Option<Vec<u8>> {
            let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
            bytes = rest;
            Some(head.to_vec())
        };
        while let Some(op) = take(1) {
            let a = match op[0] % 10 {
                0 | 1 => Self::Queue(take(1).map_or(1, |b| b[0] % 32)),
                2 => Self::Connect,
                3 | 4 => take(3).map_or(Self::Connect, |b| Self::Up {
                    conn: b[0],
                    bytes: u16::from_le_bytes([b[1], b[2]]),
                }),
                5 | 6 => take(3).map_or(Self::Connect, |b| Self::Down {
                    conn: b[0],
                    bytes: u16::from_le_bytes([b[1], b[2]]),
                }),
                7 => take(3).map_or(Self::Restart, |b| Self::Cut {
                    conn: b[0],
                    keep: u16::from_le_bytes([b[1], b[2]]),
                }),
                8 => take(4).map_or(Self::Tick(1000), |b| {
                    // Mostly short steps, now and then a long jump.
                    let t = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    Self::Tick(if t % 4 == 0 {
                        t % 100_000_000
                    } else {
                        t % 5_000
                    })
                }),
                _ => match take(1).map_or(0, |b| b[0] % 8) {
                    0 => Self::GiveUp,
                    1 | 2 => Self::Fail {
                        conn: take(1).map_or(0, |b| b[0]),
                    },
                    _ => Self::Restart,
                },
            };
            out.push(a);
        }
        out
    }
}

/// The sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Messages the writer's application sends in all.
    pub messages: u64,
    /// The window's bytes and messages.
    pub window_bytes: usize,
    pub window_messages: u64,
    /// The listener's session table: entries and time to live (µs).
    pub sessions: usize,
    pub ttl_us: u64,
}

impl Setup {
    /// Sizes from a fuzzer's first bytes.
    pub fn from_bytes(b: &[u8; 4]) -> Self {
        Self {
            messages: 1 + u64::from(b[0] % 200),
            window_bytes: 64 + usize::from(b[1]) * 16,
            window_messages: 1 + u64::from(b[2] % 64),
            sessions: 1 + usize::from(b[3] % 4),
            ttl_us: if b[3] & 0x80 == 0 { 0 } else { 20_000 },
        }
    }
}

/// What a run did, for the caller to look at (the invariants are checked inside).
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub delivered: u64,
    pub repeats: u64,
    pub dead: u64,
    pub connections: u64,
    pub restarts: u64,
}

/// The listener's side of one connection.
struct Listening {
    receiver: Receiver,
    decoder: Decoder<H, Vec<u8>>,
    incarnation: u32,
    /// The callback fails on the next message.
    fail_next: bool,
}

struct Conn {
    epoch: Epoch,
    up: VecDeque<u8>,
    down: VecDeque<u8>,
    /// Lost from here on: after the kept bytes, each side sees the end.
    cut: bool,
    /// The listener side, while it reads (`None`: closed, or its process died).
    listening: Option<Listening>,
    /// The writer still reads it (stale or not).
    writer_reads: bool,
    back: Decoder<H, Vec<u8>>,
}

/// The whole world of a run.
#[allow(missing_debug_implementations)]
pub struct Sim<W = Window<Vec<u8>>> {
    setup: Setup,
    now: u64,
    encoder: Encoder<H>,
    back_encoder: Encoder<H>,
    sender: Sender<H, W>,
    queue_batch: QueueBatch<W>,
    current: Option<usize>,
    conns: Vec<Conn>,
    sessions: Sessions<Vec<SessionSlot>>,
    incarnation: u32,
    next_session: u8,
    /// Messages queued so far, and what number each got.
    queued: u64,
    numbered: BTreeMap<(SessionId, u64), u64>,
    /// Deliveries: per session the highest number delivered, and every (session, seq) seen.
    highest: BTreeMap<SessionId, u64>,
    seen: BTreeSet<(SessionId, u64)>,
    delivered: BTreeSet<u64>,
    dead: BTreeSet<u64>,
    report: Report,
}

/// What a window holds, oldest batch first: each batch's message count and frames.
pub fn batches<W: Batches>(w: &W) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut b = w.front();
    while let Some(batch) = b {
        out.push((batch.count, w.frames(&batch, 0).to_vec()));
        b = w.after(&batch);
    }
    out
}

fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.extend(core::iter::repeat_n(0xa5, (i % 7) as usize));
    m
}

fn index(payload: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&payload[..8]);
    u64::from_be_bytes(b)
}

impl Sim {
    /// A world whose sender keeps its window in a [`Window`] over a `Vec`.
    pub fn new(setup: Setup) -> Self {
        let window = Window::new(Vec::new(), setup.window_bytes, setup.window_messages);
        Self::with_store(setup, window, Sender::queue)
    }

    /// Runs `script`, then heals the channel and checks that everything settles.
    pub fn run(setup: Setup, script: &[Action]) -> Report {
        Self::run_with(setup, script, Self::new)
    }
}

impl<W: Batches> Sim<W> {
    /// A world whose sender keeps its window in `window` (bounded as `setup` says), and
    /// queues batches with `queue_batch`.
    pub fn with_store(setup: Setup, window: W, queue_batch: QueueBatch<W>) -> Self {
        let framing = Self::framing();
        Self {
            setup,
            now: 0,
            encoder: Encoder::new(framing),
            back_encoder: Encoder::new(back_config::<H>(framing)),
            sender: Sender::new(framing, SenderConfig::new(), window, SessionId([0; 16])),
            queue_batch,
            current: None,
            conns: Vec::new(),
            sessions: Sessions::new(vec![SessionSlot::EMPTY; setup.sessions], setup.ttl_us),
            incarnation: 0,
            next_session: 1,
            queued: 0,
            numbered: BTreeMap::new(),
            highest: BTreeMap::new(),
            seen: BTreeSet::new(),
            delivered: BTreeSet::new(),
            dead: BTreeSet::new(),
            report: Report::default(),
        }
    }

    /// Runs `script` in the world `make` builds from `setup`, then heals the channel and
    /// checks that everything settles.
    pub fn run_with(setup: Setup, script: &[Action], make: impl FnOnce(Setup) -> Self) -> Report {
        let mut sim = make(setup);
        for &a in script {
            sim.step(a);
        }
        sim.heal();
        sim.report
    }

    fn framing() -> Config {
        Config::new().with_max_frame_len(64)
    }

    pub fn step(&mut self, action: Action) {
        match action {
            Action::Queue(n) => self.queue(n),
            Action::Connect => self.connect(),
            Action::Up { conn, bytes } => {
                if let Some(i) = self.pick(conn) {
                    self.up(i, usize::from(bytes));
                }
            }
            Action::Down { conn, bytes } => {
                if let Some(i) = self.pick(conn) {
                    self.down(i, usize::from(bytes));
                }
            }
            Action::Cut { conn, keep } => {
                if let Some(i) = self.pick(conn) {
                    self.cut(i, usize::from(keep));
                }
            }
            Action::Restart => self.restart(),
            Action::Tick(us) => self.tick(u64::from(us)),
            Action::GiveUp => self.give_up(),
            Action::Fail { conn } => {
                if let Some(i) = self.pick(conn)
                    && let Some(l) = self.conns[i].listening.as_mut()
                {
                    l.fail_next = true;
                }
            }
        }
        self.pump();
    }

    fn pick(&self, conn: u8) -> Option<usize> {
        (!self.conns.is_empty()).then(|| usize::from(conn) % self.conns.len())
    }

    fn queue(&mut self, n: u8) {
        if n.is_multiple_of(2) && n > 0 {
            return self.queue_batch(n);
        }
        for _ in 0..n {
            if self.queued >= self.setup.messages {
                return;
            }
            let m = message(self.queued);
            let header = self.encoder.header(m.len()).unwrap();
            let (session, seq) = (self.sender.session(), self.sender.next_seq());
            if self.sender.queue_message(&header, &m).is_err() {
                return; // full: the application waits
            }
            self.numbered.insert((session, seq), self.queued);
            self.queued += 1;
        }
    }

    /// Up to `n` messages as one batch (as a std writer's lanes hand them over).
    fn queue_batch(&mut self, n: u8) {
        let mut frames = Vec::new();
        let mut count = 0u32;
        let first = self.queued;
        while count < u32::from(n) && first + u64::from(count) < self.setup.messages {
            let m = message(first + u64::from(count));
            frames.extend_from_slice(&self.encoder.header(m.len()).unwrap());
            frames.extend_from_slice(&m);
            count += 1;
        }
        if count == 0 {
            return;
        }
        let (session, seq) = (self.sender.session(), self.sender.next_seq());
        if (self.queue_batch)(&mut self.sender, &frames, count).is_err() {
            return self.queue(1); // the application tries one at a time
        }
        for k in 0..u64::from(count) {
            self.numbered.insert((session, seq + k), first + k);
        }
        self.queued += u64::from(count);
    }

    fn connect(&mut self) {
        let opening = self.sender.connect(self.now);
        self.report.connections += 1;
        self.conns.push(Conn {
            epoch: opening.epoch,
            up: opening.hello.iter().copied().collect(),
            down: VecDeque::new(),
            cut: false,
            listening: Some(Listening {
                receiver: Receiver::new(),
                decoder: Decoder::new(Self::framing(), Vec::new()),
                incarnation: self.incarnation,
                fail_next: false,
            }),
            writer_reads: true,
            back: Decoder::new(back_config::<H>(Self::framing()), Vec::new()),
        });
        self.current = Some(self.conns.len() - 1);
    }

    /// The writer writes whatever the sender says, on its current connection.
    fn pump(&mut self) {
        let Some(i) = self.current else { return };
        while let Some(bytes) = self.sender.transmit() {
            let n = bytes.len();
            let conn = &mut self.conns[i];
            if conn.cut {
                // The write fails: the writer drops the connection.
                self.writer_lost(i);
                return;
            }
            conn.up.extend(bytes.iter().copied());
            self.sender.transmitted(n, self.now);
        }
    }

    fn writer_lost(&mut self, i: usize) {
        let _ = self.sender.disconnected(self.conns[i].epoch);
        if self.current == Some(i) {
            self.current = None;
        }
    }

    /// The listener side of connection `i` ends: its session goes back to the table.
    fn listener_close(&mut self, i: usize) {
        if let Some(mut l) = self.conns[i].listening.take()
            && l.incarnation == self.incarnation
        {
            l.receiver.close(&mut self.sessions, self.now);
        }
        // The writer sees the end once what is in flight has arrived.
        self.conns[i].cut = true;
    }

    fn up(&mut self, i: usize, n: usize) {
        let take = n.min(self.conns[i].up.len());
        let bytes: Vec<u8> = self.conns[i].up.drain(..take).collect();
        if self.conns[i]
            .listening
            .as_ref()
            .is_none_or(|l| l.incarnation != self.incarnation)
        {
            return; // nobody reads it
        }
        let mut input = &bytes[..];
        if !self.listening(i).receiver.is_open() {
            match self.listening(i).receiver.read_hello(input) {
                Ok((used, hello)) => {
                    input = &input[used..];
                    if let Some(hello) = hello
                        && !self.open(i, hello)
                    {
                        return;
                    }
                }
                Err(_) => return self.listener_close(i),
            }
        }
        while !input.is_empty() {
            let l = self.conns[i].listening.as_mut().unwrap();
            let fed = match l.decoder.feed(input) {
                Ok(fed) => fed,
                Err(e) => panic!("the listener could not decode the writer's frames: {e}"),
            };
            input = &input[fed.consumed..];
            if let Some(Event::Frame(payload)) = fed.event {
                let d = l
                    .receiver
                    .on_message()
                    .expect("frames before the session opened");
                if l.fail_next {
                    // The callback panicked: the message is not delivered, the connection ends
                    // (after an acknowledgement of what was, as a transport flushes one).
                    if let Some(ack) = l.receiver.poll_ack(u64::MAX) {
                        self.send_back(i, &ack);
                    }
                    return self.listener_close(i);
                }
                let payload = payload.to_vec();
                self.check_delivery(d.session, d.seq, d.may_repeat, index(&payload));
                let l = self.conns[i].listening.as_mut().unwrap();
                assert!(
                    l.receiver.delivered(d, payload.len()),
                    "delivered out of order"
                );
            }
        }
        if self.conns[i].cut && self.conns[i].up.is_empty() {
            return self.listener_close(i);
        }
        self.acks(i);
    }

    fn listening(&mut self, i: usize) -> &mut Listening {
        self.conns[i].listening.as_mut().unwrap()
    }

    /// Opens the session for connection `i`; `false` when the connection was closed.
    fn open(&mut self, i: usize, hello: crate::acked::Hello) -> bool {
        for _ in 0..self.conns.len() + 1 {
            let now = self.now;
            let l = self.conns[i].listening.as_mut().unwrap();
            match l.receiver.open(hello, &mut self.sessions, i as u64, now) {
                Ok(welcome) => {
                    self.send_back(i, &welcome);
                    return true;
                }
                Err(OpenError::Held { by }) => {
                    // The writer has moved on: the older connection ends first.
                    assert_ne!(by, i as u64, "a connection holds its own session twice");
                    self.listener_close(by as usize);
                }
                Err(_) => {
                    self.listener_close(i);
                    return false;
                }
            }
        }
        panic!("the session stayed held after its holders closed");
    }

    fn send_back(&mut self, i: usize, payload: &[u8]) {
        if self.conns[i].cut {
            return; // written into a broken connection: lost
        }
        let header = self.back_encoder.header(payload.len()).unwrap();
        let down = &mut self.conns[i].down;
        down.extend(header.iter().copied());
        down.extend(payload.iter().copied());
    }

    fn acks(&mut self, i: usize) {
        let now = self.now;
        let Some(l) = self.conns[i].listening.as_mut() else {
            return;
        };
        if l.incarnation != self.incarnation {
            return;
        }
        if let Some(ack) = l.receiver.poll_ack(now) {
            self.send_back(i, &ack);
        }
    }

    fn check_delivery(&mut self, session: SessionId, seq: u64, may_repeat: bool, index: u64) {
        let want = self.numbered.get(&(session, seq)).copied();
        assert_eq!(
            want,
            Some(index),
            "message {index} delivered as number {seq} of session {session}"
        );
        let highest = self.highest.entry(session).or_insert(0);
        assert!(
            seq <= *highest + 1,
            "message {seq} of session {session} delivered after only {highest}: a gap"
        );
        *highest = (*highest).max(seq);
        if !self.seen.insert((session, seq)) {
            assert!(
                may_repeat,
                "message {seq} of session {session} delivered again without may_repeat"
            );
            self.report.repeats += 1;
        }
        self.delivered.insert(index);
        self.report.delivered += 1;
    }

    fn down(&mut self, i: usize, n: usize) {
        let take = n.min(self.conns[i].down.len());
        let bytes: Vec<u8> = self.conns[i].down.drain(..take).collect();
        if !self.conns[i].writer_reads {
            return;
        }
        let epoch = self.conns[i].epoch;
        let mut input = &bytes[..];
        while !input.is_empty() {
            let fed = match self.conns[i].back.feed(input) {
                Ok(fed) => fed,
                Err(e) => panic!("the writer could not decode the listener's frames: {e}"),
            };
            input = &input[fed.consumed..];
            if let Some(Event::Frame(payload)) = fed.event {
                match self.sender.on_back(epoch, payload, self.now) {
                    Ok(Received::Welcome { .. } | Received::Acked { .. } | Received::Stale) => {}
                    Ok(_) => {}
                    Err(e) => panic!("the sender refused a frame of a correct listener: {e}"),
                }
            }
        }
        if self.conns[i].cut && self.conns[i].down.is_empty() {
            self.conns[i].writer_reads = false;
            self.writer_lost(i);
        }
    }

    fn cut(&mut self, i: usize, keep: usize) {
        let c = &mut self.conns[i];
        c.up.truncate(keep);
        c.down.truncate(keep);
        c.cut = true;
        if c.up.is_empty() {
            self.listener_close(i);
        }
        if self.conns[i].down.is_empty() {
            self.conns[i].writer_reads = false;
            self.writer_lost(i);
        }
    }

    fn restart(&mut self) {
        self.incarnation += 1;
        self.report.restarts += 1;
        self.sessions = Sessions::new(
            vec![SessionSlot::EMPTY; self.setup.sessions],
            self.setup.ttl_us,
        );
        for c in &mut self.conns {
            // The process is gone: nothing more is read, what it sent may still arrive.
            c.listening = None;
            c.up.clear();
            c.cut = true;
        }
    }

    fn tick(&mut self, us: u64) {
        self.now += us;
        if self.sender.poll(self.now).is_some()
            && let Some(i) = self.current
        {
            self.writer_lost(i);
        }
        for i in 0..self.conns.len() {
            self.acks(i);
        }
    }

    fn give_up(&mut self) {
        let next = SessionId([self.next_session; 16]);
        let dead = &mut self.dead;
        let n = self.sender.give_up(next, |payload| {
            dead.insert(index(payload));
        });
        if n > 0 {
            self.next_session = self.next_session.wrapping_add(1);
            if let Some(i) = self.current.take() {
                let _ = self.sender.disconnected(self.conns[i].epoch);
            }
        }
        self.report.dead = self.dead.len() as u64;
    }

    /// The channel heals: old connections end, and a fresh one runs until all is settled.
    fn heal(&mut self) {
        for i in 0..self.conns.len() {
            self.cut(i, 0);
        }
        for _ in 0..10_000 {
            self.queue(u8::MAX);
            if self.queued == self.setup.messages && self.sender.is_settled() {
                break;
            }
            if self.current.is_none() {
                self.connect();
            }
            let i = self.current.unwrap_or_default();
            self.pump();
            self.up(i, usize::MAX);
            self.down(i, usize::MAX);
            self.tick(1_000);
            self.down(i, usize::MAX);
            self.pump();
        }
        assert!(
            self.queued == self.setup.messages && self.sender.is_settled(),
            "not settled after healing: {} of {} queued, {} unacknowledged",
            self.queued,
            self.setup.messages,
            self.sender.unacknowledged()
        );
        for i in 0..self.setup.messages {
            assert!(
                self.delivered.contains(&i) || self.dead.contains(&i),
                "message {i} neither delivered nor given up"
            );
        }
        self.report.dead = self.dead.len() as u64;
    }
}
