//! The embedded-io `FrameReader` over a reader that returns fuzzer-chosen short reads and
//! errors: it yields exactly the frames of one feed, in order, then the right ending (clean
//! end, `UnexpectedEof` inside a frame, the I/O error, or the decode error).
#![no_main]

use buffstreams_framing::harness::{Out, run};
use buffstreams_framing::{
    Config, Decoder, Event, FrameReader, LengthPrefix, Oversize, ReadError, with_format,
};
use libfuzzer_sys::fuzz_target;

struct Hostile<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
    error_at_end: bool,
    interrupted: bool,
}

impl embedded_io::ErrorType for Hostile<'_> {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Hostile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let size = self
            .sizes
            .get(self.turn % self.sizes.len().max(1))
            .copied()
            .unwrap_or(255);
        self.turn += 1;
        if size == 0 && !self.data.is_empty() && !self.interrupted {
            self.interrupted = true;
            // A transient error mid-stream: the reader reports it and can be called again.
            return Err(embedded_io::ErrorKind::Interrupted);
        }
        self.interrupted = false;
        if self.data.is_empty() {
            return if self.error_at_end {
                Err(embedded_io::ErrorKind::ConnectionReset)
            } else {
                Ok(0)
            };
        }
        let n = usize::from(size).max(1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn check<H: LengthPrefix>(
    config: Config,
    stream: &[u8],
    sizes: &[u8],
    error_at_end: bool,
    rbuf: usize,
) {
    let expect = run::<H>(config, stream, &[]);
    let dec = Decoder::<H, _>::new(config, vec![0u8; 512]);
    let mut reader = FrameReader::new(
        Hostile {
            data: stream,
            sizes,
            turn: 0,
            error_at_end,
            interrupted: false,
        },
        dec,
        vec![0u8; rbuf],
    );
    let mut got = Vec::new();
    // Bounded: every call either consumes a byte, yields an item, or ends.
    for _ in 0..stream.len() * 2 + sizes.len() + 8 {
        match reader.read_event() {
            Ok(Some(Event::Frame(f))) => got.push(Out::Frame(f.to_vec())),
            Ok(Some(Event::Skipped(n))) => got.push(Out::Skipped(n)),
            Ok(Some(other)) => panic!("an event this target does not know: {other:?}"),
            Ok(None) => {
                assert!(expect.error.is_none() && !expect.mid_frame && !error_at_end);
                assert_eq!(got, expect.items);
                return;
            }
            Err(ReadError::Io(embedded_io::ErrorKind::Interrupted)) => continue,
            Err(ReadError::Io(_)) => {
                assert!(error_at_end);
                assert!(expect.error.is_none());
                assert_eq!(got, expect.items);
                return;
            }
            Err(ReadError::UnexpectedEof) => {
                assert!(expect.mid_frame && !error_at_end);
                assert_eq!(got, expect.items);
                return;
            }
            Err(ReadError::Decode(e)) => {
                assert_eq!(Some(e), expect.error);
                assert_eq!(got, expect.items);
                return;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    panic!("reader did not finish");
}

fuzz_target!(|data: &[u8]| {
    let [sel, knobs, nsizes, rest @ ..] = data else {
        return;
    };
    let nsizes = usize::from(*nsizes % 8).min(rest.len());
    let (sizes, stream) = rest.split_at(nsizes);
    let policy = if knobs & 1 == 0 {
        Oversize::Reject
    } else {
        Oversize::Skip
    };
    let config = Config::new()
        .with_max_frame_len([5, 100, 512][usize::from(knobs >> 2) % 3])
        .with_oversize(policy);
    let rbuf = [1, 3, 16, 4096][usize::from(knobs >> 4) % 4];
    with_format!(
        usize::from(*sel),
        check,
        config,
        stream,
        sizes,
        knobs & 2 != 0,
        rbuf
    );
});
