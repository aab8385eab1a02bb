//! Interop over real sockets on 127.0.0.1 with implementations we did not write: each peer
//! writes to transport-std's `Listener` and reads from its `Writer`, byte for byte, with the
//! edge cases (empty, the varint boundaries, the largest frame, one byte over it, a
//! non-minimal varint, a connection cut mid-frame), and reads hand-made hostile streams
//! beside our decoder. A failure names the peer, the case and the first differing byte.
//!
//! - `tokio`: tokio-util's `LengthDelimitedCodec` on tokio.
//! - `protobuf`: Python protobuf and protobuf-java (`examples/peers/peer.py`, `Peer.java`).
//! - `go`: Go's standard library framing as Go BuffStreams v2 does (`examples/peers/peer.go`).
//! - `tls`: mutual TLS with Python's `ssl` (`examples/peers/tls_peer.py`) and the `openssl`
//!   command-line tools, as clients and as servers.
//!
//! The Python, Java and Go peers need `python3-protobuf`, `libprotobuf-java` with a JDK and
//! `golang-go` (CI installs them); without them a test says why it skips, and with
//! `BUFFSTREAMS_NO_SKIP` set (CI) it fails instead.

mod both;
#[path = "../common/mod.rs"]
mod common;
mod go;
mod harness;
mod protobuf;
mod tls;
mod tokio;
