#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[macro_use]
mod fmt;

mod config;
mod error;
mod listener;
mod socket;
mod stats;
mod writer;

pub use config::{ListenerConfig, RetryPolicy, WriterConfig};
pub use error::{RecvError, ReplyError, SendError};
pub use listener::{Connection, Listener, Slot};
pub use socket::{read_frames, write_frame, write_frames, write_room};
pub use stats::{ListenerStats, WriterStats};
pub use writer::{Status, Writer};
