#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod clamp;
mod error;
mod listener;
mod manager;
mod stats;
mod sync;
#[cfg(feature = "tls")]
mod tls;
mod writer;

pub use buffstreams_framing as framing;
pub use buffstreams_framing::acked::{SenderError, SessionId};
pub use buffstreams_framing::{
    BigEndian, BuffStreams, Config, DecodeError, LengthPrefix, LittleEndian, Oversize, Varint32,
    Varint64,
};
pub use error::Error;
pub use listener::{
    CallbackResult, Connection, Delivery, Listener, ListenerConfig, ListenerHandle, OverLimit,
    ProtocolErrorFn, ShutdownHandle,
};
pub use manager::Manager;
/// The rustls this crate is built with (feature `tls`): its `ServerConfig` and `ClientConfig`
/// go into [`ListenerConfig::with_tls`] and [`WriterConfig::with_tls`].
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;
pub use stats::{ListenerStats, WriterStats};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{TlsError, TlsReason};
pub use writer::{DeadLetterFn, ReplyFn, RetryPolicy, WindowFull, Writer, WriterConfig};
