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

#[cfg(any(feature = "std", feature = "_harness"))]
extern crate alloc;
#[cfg(feature = "tokio-util")]
extern crate std;

pub mod acked;
#[cfg(feature = "async")]
mod asynch;
mod buffered;
#[cfg(feature = "tokio-util")]
mod codec;
mod config;
mod decoder;
mod encoder;
mod error;
#[cfg(feature = "_harness")]
#[doc(hidden)]
pub mod harness;
mod header;
mod io;
mod storage;
mod walk;

#[cfg(feature = "async")]
pub use asynch::{AsyncFrameReader, AsyncFrameWriter};
#[cfg(feature = "tokio-util")]
pub use codec::{Codec, CodecError};
pub use config::{Config, DEFAULT_MAX_FRAME_LEN, DEFAULT_MAX_SKIP_LEN, Oversize};
pub use decoder::{Decoded, Decoder, Event, Feed, Found};
pub use encoder::Encoder;
pub use error::{DecodeError, EncodeError, ReadError, WriteError};
pub use header::{
    BigEndian, BuffStreams, Header, LengthPrefix, LittleEndian, MAX_HEADER_LEN, Parsed, Varint32,
    Varint64, buffstreams_header_len,
};
pub use io::{FrameReader, FrameWriter};
pub use storage::Storage;
pub use walk::{FrameAt, Frames, frame_at};
