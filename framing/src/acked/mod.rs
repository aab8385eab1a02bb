//! The acknowledged mode: every message a writer accepts is, in the end, either handed to the
//! listener's application (and acknowledged) or given back to the writer's application as
//! undelivered, even across dropped connections and restarted processes. The wire format and
//! the protocol, as two sans-io state machines that every transport drives the same way:
//! [`Sender`] (the writer's side) and [`Receiver`] (one connection at the listener, with a
//! [`Sessions`] table shared by its connections). Like the rest of the crate: `no_std`, no
//! allocation (the window and the table are caller storage), no I/O, no clock (the caller
//! passes `now` in microseconds of its own monotonic clock), no panics on anything a peer sends.
//!
//! # The exchange
//!
//! 1. The writer opens the connection with a [`Hello`] (46 bytes, not framed; [`field`]
//!    names the parts):
//!
//!    ```text
//!    offset  0          10        13   14                 30            38              46
//!            FF FF .. FF 'B' 'S' 'A' 01  session (16 bytes)  first_seq     resent_until
//!            (10 bytes)                  random per writer   u64 BE        u64 BE
//!    ```
//!
//!    Ten `FF` bytes first: no decoder of a plain stream takes them for a length (a varint
//!    that never ends, a zigzag varint that never ends, or a fixed-width length beyond any
//!    sane maximum — [`plain_decoder_refuses_hello`] checks a configuration), so a listener
//!    without the mode refuses the connection instead of misreading it. Messages are
//!    numbered per session from 1, in the order they go on the wire: `first_seq` is the
//!    number of the first message not yet acknowledged, `resent_until` the last one already
//!    written on an earlier connection (`first_seq - 1` when none was).
//! 2. The listener answers with a [`Back::Welcome`] frame: how far it has handed this
//!    session's messages to its application (`delivered`).
//! 3. Then the writer sends plain frames, with no per-message overhead, starting with
//!    message `delivered + 1`, and the listener numbers them by counting from there. It
//!    acknowledges with [`Back::Ack`] frames (cumulative: every message up to `delivered`
//!    was handed to the application and its callback returned): every [`ACK_EVERY`] messages
//!    or [`ACK_BYTES`] bytes of them while the writer streams, and once [`ACK_DELAY_US`]
//!    passed without more. Replies of the
//!    application travel beside them as [`Back::Reply`].
//!
//! Listener-to-writer frames use the connection's header format ([`back_config`]); their
//! payload starts with one kind byte:
//!
//! ```text
//! Welcome  'W' (57)  version (1 byte)  delivered (u64 BE)    10 bytes
//! Ack      'A' (41)  delivered (u64 BE)                      9 bytes
//! Reply    'R' (52)  the reply's bytes                       1 + its length
//! ```
//!
//! # What the machines guarantee
//!
//! - Within a session, messages reach the application in order and without a gap.
//! - A message reaches the application a second time only when the listener did not know the
//!   session when the connection carrying it opened (a restarted process, or a session
//!   forgotten as idle or to make room), and then [`Delivery::may_repeat`] says so.
//! - Both hold because numbering has one source per connection: the [`Receiver`] numbers from
//!   its welcome's `delivered + 1`, and the [`Sender`] resumes exactly there, taking
//!   acknowledgements only from the connection it opened last ([`Received::Stale`] for the
//!   others). A session is served by one connection at a time ([`OpenError::Held`]), so a
//!   welcome always says everything delivered before it.
//! - A hello that arrives late (older than the connection serving its session, or than a
//!   connection of a session the table has since forgotten) is refused ([`OpenError::Stale`]):
//!   it says less than the writer has written, and opening a forgotten session with it would
//!   leave a repeat unmarked. This needs connection ids that grow in the order connections were
//!   accepted.
//!
//! # Driving the machines
//!
//! A transport moves bytes and owns policy (threads or a poll loop, reconnect backoff, when to
//! give up); the machines decide everything else. The whole protocol, over an in-memory wire:
//!
//! ```
//! use buffstreams_framing::acked::{
//!     Received, Receiver, Sender, SenderConfig, SessionId, SessionSlot, Sessions, Window,
//!     back_config,
//! };
//! use buffstreams_framing::{BigEndian, Config, Decoder, Encoder, Event};
//!
//! let framing = Config::new();
//! let encoder = Encoder::<BigEndian<4>>::new(framing);
//! // The writer: a window in caller storage (an array here; a Vec on std).
//! let window = Window::new([0u8; 1024], usize::MAX, 64);
//! let mut sender =
//!     Sender::<BigEndian<4>, _>::new(framing, SenderConfig::new(), window, SessionId([7; 16]));
//! for m in [&b"one"[..], b"two", b"three"] {
//!     sender.queue_message(&encoder.header(m.len()).unwrap(), m).unwrap();
//! }
//! // The listener: a session table shared by its connections, a Receiver per connection.
//! let mut sessions = Sessions::new([SessionSlot::EMPTY; 4], 600_000_000);
//! let mut receiver = Receiver::new();
//! let back = Encoder::<BigEndian<4>>::new(back_config::<BigEndian<4>>(framing));
//! let mut to_listener = Vec::new();
//! let mut to_writer = Vec::new();
//!
//! // The writer connects: the hello goes first.
//! let opening = sender.connect(0);
//! to_listener.extend_from_slice(&opening.hello);
//! // The listener reads the hello, opens the session (connection id 1) and welcomes.
//! let (used, hello) = receiver.read_hello(&to_listener).unwrap();
//! let welcome = receiver.open(hello.unwrap(), &mut sessions, 1, 0).unwrap();
//! to_listener.drain(..used);
//! to_writer.extend_from_slice(&back.header(welcome.len()).unwrap());
//! to_writer.extend_from_slice(&welcome);
//!
//! // The writer reads the welcome, then writes what `transmit` says, as far as it went.
//! let mut replies = Decoder::<BigEndian<4>, _>::new(back_config::<BigEndian<4>>(framing), [0u8; 64]);
//! let fed = replies.feed(&to_writer).unwrap();
//! let Some(Event::Frame(payload)) = fed.event else { unreachable!() };
//! assert_eq!(sender.on_back(opening.epoch, payload, 10), Ok(Received::Welcome { newly: 0, resend: 0 }));
//! to_writer.clear();
//! while let Some(bytes) = sender.transmit() {
//!     let n = bytes.len();
//!     to_listener.extend_from_slice(bytes);
//!     sender.transmitted(n, 20);
//! }
//!
//! // The listener decodes, numbers, delivers, and acknowledges when due.
//! let mut decoder = Decoder::<BigEndian<4>, _>::new(framing, [0u8; 64]);
//! let mut input = &to_listener[..];
//! while !input.is_empty() {
//!     let fed = decoder.feed(input).unwrap();
//!     input = &input[fed.consumed..];
//!     if let Some(Event::Frame(message)) = fed.event {
//!         let delivery = receiver.on_message().unwrap();
//!         println!("message {} of {}: {message:?}", delivery.seq, delivery.session);
//!         receiver.delivered(delivery, message.len()); // the application's callback returned
//!     }
//! }
//! // After each chunk: an acknowledgement now (after ACK_EVERY messages or ACK_BYTES bytes),
//! // or at `ack_at` if quiet.
//! assert_eq!(receiver.poll_ack(30), None);
//! let ack = receiver.poll_ack(receiver.ack_at().unwrap()).unwrap();
//! let mut frame = back.header(ack.len()).unwrap().to_vec();
//! frame.extend_from_slice(&ack);
//! let fed = replies.feed(&frame).unwrap();
//! let Some(Event::Frame(payload)) = fed.event else { unreachable!() };
//! assert_eq!(sender.on_back(opening.epoch, payload, 600), Ok(Received::Acked { newly: 3 }));
//! assert!(sender.is_settled());
//! receiver.close(&mut sessions, 700); // the connection ends: the session stays known
//! ```
//!
//! When a connection breaks, the writer calls [`Sender::disconnected`] and later
//! [`Sender::connect`] again: the next welcome says where to resume, and [`Sender::transmit`]
//! re-sends from there. When it stops trying, [`Sender::give_up`] hands every unacknowledged
//! message back and starts a new session. At the listener, a connection that ends calls
//! [`Receiver::close`]; a hello for a session another connection still holds gets
//! [`OpenError::Held`]: end that connection first.
//!
//! A device that reboots loses its RAM window with everything unacknowledged in it: to
//! survive that, an application persists what it queued (and the session) itself.
//!
//! The window is a [`Batches`] store. [`Window`] copies each batch into caller storage, which
//! suits a poll loop; a transport that owns its send buffers can keep them instead
//! ([`Sender::queue_in`] pushes a batch its own way): transport-std's writer hands each full
//! 64 KiB buffer over, which saved a copy per byte.

mod receiver;
mod sender;
mod sessions;
mod window;
mod wire;

pub use receiver::{ACK_BYTES, ACK_DELAY_US, ACK_EVERY, Delivery, Receiver};
pub use sender::{Broken, Epoch, Opening, Received, Sender, SenderConfig, SenderError};
pub use sessions::{OpenError, Opened, SessionSlot, Sessions};
pub use window::{Batch, Batches, QueueError, RECORD_LEN, Window};
pub use wire::{
    ACK_LEN, Back, HELLO_LEN, Hello, MAGIC, PREFIX, REPLY, SessionId, VERSION, WELCOME_LEN,
    WireError, ack, back_config, field, plain_decoder_refuses_hello, welcome,
};

#[cfg(test)]
mod tests;
