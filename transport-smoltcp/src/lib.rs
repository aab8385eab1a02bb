#![doc = include_str!("../README.md")]
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
pub use socket::{recv_frames, send_frame, send_frames, send_free};
pub use stats::{ListenerStats, WriterStats};
pub use writer::{Status, Writer};
