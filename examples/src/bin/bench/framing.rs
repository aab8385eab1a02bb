//! `--peer framing`: the framing crate's unshared `FrameWriter` over a plain `TcpStream`
//! (through `embedded-io-adapters`), into the same `Listener` as `buffstreams`: no flusher
//! thread, no reconnects, the single-thread fast path.

use buffstreams_framing::{BigEndian, Config, Encoder, FrameWriter};
use embedded_io_adapters::std::FromStd;
use std::net::TcpStream;

use crate::buffstreams::measure;
use crate::runner::{Outcome, Run, pump};

pub fn run(run: &Run) -> Outcome {
    let (payload, flush_every) = (run.payload, run.flush_every);
    measure(run, move |addr, stop| {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let encoder =
            Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(payload.max(1)));
        let mut w = FrameWriter::new(FromStd::new(stream), encoder, vec![0u8; 64 * 1024]);
        let msg = vec![0xa5u8; payload];
        pump(
            &mut w,
            stop,
            flush_every,
            |w| {
                w.write_frame(&msg).expect("write");
            },
            |w| w.flush().expect("flush"),
        )
    })
}
