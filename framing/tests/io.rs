//! The embedded-io frame reader/writer over real 127.0.0.1 sockets (through
//! embedded-io-adapters) and over hostile in-memory readers.

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use buffstreams_framing::{
    AsyncFrameReader, AsyncFrameWriter, BigEndian, Config, DecodeError, Decoder, Encoder, Event,
    FrameReader, FrameWriter, Oversize, ReadError, Varint32, WriteError,
};
use embedded_io_adapters::std::FromStd;

/// Payload `i`: sizes from 0 up to 20 KiB (larger than the 4 KiB writer buffer), content tagged.
fn payload(i: usize) -> Vec<u8> {
    let len = match i % 7 {
        0 => 0,
        1 => 1,
        2 => 110,
        3 => 4000,
        4 => 4096,
        5 => 20_000,
        _ => i % 300,
    };
    (0..len).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect()
}

const COUNT: usize = 3000;

#[test]
fn blocking_reader_writer_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let writer = thread::spawn(move || {
        let stream = TcpStream::connect(addr).unwrap();
        let enc = Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(1 << 20));
        let mut w = FrameWriter::new(FromStd::new(stream), enc, vec![0u8; 4096]);
        let mut wire = 0;
        for i in 0..COUNT {
            wire += w.write_frame(&payload(i)).unwrap();
        }
        w.flush().unwrap();
        wire
    });
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let dec = Decoder::<BigEndian<4>, _>::new(Config::new().with_max_frame_len(1 << 20), vec![]);
    let mut r = FrameReader::new(FromStd::new(stream), dec, vec![0u8; 64 * 1024]);
    let mut i = 0;
    let mut wire = 0;
    while let Some(f) = r.read_frame().unwrap() {
        assert_eq!(f, &payload(i)[..], "frame {i}");
        wire += 4 + f.len();
        i += 1;
        assert!(i <= COUNT);
    }
    assert_eq!(i, COUNT);
    assert_eq!(writer.join().unwrap(), wire);
}

#[test]
fn async_reader_writer_over_tcp() {
    use embedded_io_adapters::tokio_1::FromTokio;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let enc = Encoder::<Varint32>::new(Config::new().with_max_frame_len(1 << 20));
            let mut w = AsyncFrameWriter::new(FromTokio::new(stream), enc, [0u8; 4096]);
            // The socket stays reachable, as on the blocking twin.
            assert_eq!(w.get_ref().inner().peer_addr().unwrap(), addr);
            w.get_mut().inner_mut().set_nodelay(true).unwrap();
            for i in 0..COUNT {
                w.write_frame(&payload(i)).await.unwrap();
            }
            w.flush().await.unwrap();
        });
        let (stream, _) = listener.accept().await.unwrap();
        let dec = Decoder::<Varint32, _>::new(Config::new().with_max_frame_len(1 << 20), vec![]);
        let mut r = AsyncFrameReader::new(FromTokio::new(stream), dec, [0u8; 8192]);
        assert_eq!(r.get_ref().inner().local_addr().unwrap(), addr);
        r.get_mut().inner_mut().set_nodelay(true).unwrap();
        let mut i = 0;
        let read = async {
            while let Some(f) = r.read_frame().await.unwrap() {
                assert_eq!(f, &payload(i)[..], "frame {i}");
                i += 1;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("bounded");
        assert_eq!(i, COUNT);
        writer.await.unwrap();
    });
}

/// A reader that hands out the stream in scripted short reads, then an error or EOF.
struct Script<'a> {
    data: &'a [u8],
    sizes: std::iter::Cycle<std::vec::IntoIter<usize>>,
    fail_at_end: bool,
}

impl embedded_io::ErrorType for Script<'_> {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io::Read for Script<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.data.is_empty() {
            return if self.fail_at_end {
                Err(embedded_io::ErrorKind::ConnectionReset)
            } else {
                Ok(0)
            };
        }
        let n = self
            .sizes
            .next()
            .unwrap()
            .clamp(1, buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn script(data: &[u8], sizes: Vec<usize>, fail_at_end: bool) -> Script<'_> {
    Script {
        data,
        sizes: sizes.into_iter().cycle(),
        fail_at_end,
    }
}

fn framed(payloads: &[&[u8]]) -> Vec<u8> {
    let enc = Encoder::<BigEndian<2>>::default();
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&enc.header(p.len()).unwrap());
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn reader_survives_short_reads() {
    let wire = framed(&[b"alpha", b"", b"gamma-gamma", &[9u8; 300]]);
    for sizes in [vec![1], vec![2, 3], vec![7, 1, 64], vec![1000]] {
        let dec = Decoder::<BigEndian<2>, _>::new(Config::new(), [0u8; 512]);
        let mut r = FrameReader::new(script(&wire, sizes, false), dec, [0u8; 16]);
        assert_eq!(r.read_frame().unwrap(), Some(&b"alpha"[..]));
        assert_eq!(r.read_frame().unwrap(), Some(&b""[..]));
        assert_eq!(r.read_frame().unwrap(), Some(&b"gamma-gamma"[..]));
        assert_eq!(r.read_frame().unwrap(), Some(&[9u8; 300][..]));
        assert_eq!(r.read_frame().unwrap(), None);
    }
}

#[test]
fn reader_eof_mid_frame_is_error() {
    let wire = framed(&[b"whole", b"partial"]);
    let cut = &wire[..wire.len() - 2];
    let dec = Decoder::<BigEndian<2>, _>::new(Config::new(), [0u8; 64]);
    let mut r = FrameReader::new(script(cut, vec![3], false), dec, [0u8; 64]);
    assert_eq!(r.read_frame().unwrap(), Some(&b"whole"[..]));
    assert_eq!(r.read_frame(), Err(ReadError::UnexpectedEof));
    // Half a header is mid-frame too.
    let dec = Decoder::<BigEndian<2>, _>::new(Config::new(), [0u8; 64]);
    let mut r = FrameReader::new(script(&[0], vec![1], false), dec, [0u8; 64]);
    assert_eq!(r.read_frame(), Err(ReadError::UnexpectedEof));
}

#[test]
fn reader_passes_io_errors_and_decode_errors() {
    let wire = framed(&[b"ok"]);
    let dec = Decoder::<BigEndian<2>, _>::new(Config::new(), [0u8; 64]);
    let mut r = FrameReader::new(script(&wire, vec![1], true), dec, [0u8; 64]);
    assert_eq!(r.read_frame().unwrap(), Some(&b"ok"[..]));
    assert_eq!(
        r.read_frame(),
        Err(ReadError::Io(embedded_io::ErrorKind::ConnectionReset))
    );

    let wire = framed(&[&[1u8; 100]]);
    let dec = Decoder::<BigEndian<2>, _>::new(Config::new().with_max_frame_len(99), [0u8; 128]);
    let mut r = FrameReader::new(script(&wire, vec![5], false), dec, [0u8; 64]);
    assert_eq!(
        r.read_frame(),
        Err(ReadError::Decode(DecodeError::FrameTooLong {
            len: 100,
            max: 99
        }))
    );
}

#[test]
fn reader_reports_and_passes_over_skipped() {
    let wire = framed(&[b"a", &[0u8; 200], b"b"]);
    let cfg = Config::new()
        .with_max_frame_len(10)
        .with_oversize(Oversize::Skip);
    let mut r = FrameReader::new(
        script(&wire, vec![9], false),
        Decoder::<BigEndian<2>, _>::new(cfg, [0u8; 10]),
        [0u8; 32],
    );
    assert_eq!(r.read_event().unwrap(), Some(Event::Frame(b"a")));
    assert_eq!(r.read_event().unwrap(), Some(Event::Skipped(200)));
    assert_eq!(r.read_event().unwrap(), Some(Event::Frame(b"b")));
    let mut r = FrameReader::new(
        script(&wire, vec![9], false),
        Decoder::<BigEndian<2>, _>::new(cfg, [0u8; 10]),
        [0u8; 32],
    );
    assert_eq!(r.read_frame().unwrap(), Some(&b"a"[..]));
    assert_eq!(r.read_frame().unwrap(), Some(&b"b"[..]));
    assert_eq!(r.read_frame().unwrap(), None);
}

/// Records each `write` call so coalescing is visible.
#[derive(Default)]
struct Calls {
    writes: Vec<Vec<u8>>,
    flushes: usize,
    zero_after: Option<usize>,
}

impl embedded_io::ErrorType for Calls {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for Calls {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        if self.zero_after == Some(self.writes.len()) {
            return Ok(0);
        }
        self.writes.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.flushes += 1;
        Ok(())
    }
}

#[test]
fn writer_coalesces_small_and_writes_large_through() {
    let enc = Encoder::<BigEndian<4>>::new(Config::new().with_max_frame_len(1 << 16));
    let mut w = FrameWriter::new(Calls::default(), enc, [0u8; 64]);
    for _ in 0..4 {
        assert_eq!(w.write_frame(b"0123456789").unwrap(), 14);
    }
    assert!(w.get_ref().writes.is_empty(), "small frames stay buffered");
    assert_eq!(w.buffered(), 56);
    // Does not fit: the buffer goes out first, then the frame is buffered.
    w.write_frame(b"0123456789").unwrap();
    assert_eq!(w.get_ref().writes.len(), 1);
    assert_eq!(w.get_ref().writes[0].len(), 56);
    // Large: the buffer is topped up with its start, the rest goes straight through.
    let big = vec![7u8; 1000];
    assert_eq!(w.write_frame(&big).unwrap(), 1004);
    let writes = &w.get_ref().writes;
    assert_eq!(writes.len(), 3);
    assert_eq!(writes[1].len(), 64);
    assert_eq!(writes[2].len(), 1000 - (64 - 14 - 4));
    w.flush().unwrap();
    assert_eq!(w.get_ref().flushes, 1);
    let all: Vec<u8> = w.get_ref().writes.concat();
    let dec = Decoder::<BigEndian<4>, _>::new(Config::new().with_max_frame_len(1 << 16), vec![]);
    let mut r = FrameReader::new(&all[..], dec, [0u8; 100]);
    for _ in 0..5 {
        assert_eq!(r.read_frame().unwrap(), Some(&b"0123456789"[..]));
    }
    assert_eq!(r.read_frame().unwrap(), Some(&big[..]));
    assert_eq!(r.read_frame().unwrap(), None);
}

#[test]
fn writer_errors() {
    let mut w = FrameWriter::new(
        Calls::default(),
        Encoder::<BigEndian<1>>::default(),
        [0u8; 8],
    );
    assert!(matches!(
        w.write_frame(&[0u8; 256]),
        Err(WriteError::Encode(_))
    ));
    assert_eq!(w.buffered(), 0, "nothing buffered for a refused frame");
    let mut w = FrameWriter::new(
        Calls {
            zero_after: Some(0),
            ..Calls::default()
        },
        Encoder::<BigEndian<1>>::default(),
        [0u8; 8],
    );
    w.write_frame(b"abc").unwrap();
    assert_eq!(w.flush(), Err(WriteError::WriteZero));
    // A buffer smaller than a header still works, unbuffered.
    let mut w = FrameWriter::new(Calls::default(), Encoder::<Varint32>::default(), [0u8; 0]);
    w.write_frame(b"xyz").unwrap();
    assert_eq!(w.get_ref().writes.concat(), b"\x03xyz");
}

#[test]
fn tcp_reader_sees_peer_reset_as_error_not_frame() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        use std::io::Write;
        s.write_all(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
        rx.recv().unwrap();
    });
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let dec = Decoder::<BigEndian<4>, _>::new(Config::new(), [0u8; 64]);
    let mut r = FrameReader::new(FromStd::new(stream), dec, [0u8; 64]);
    tx.send(()).unwrap();
    t.join().unwrap();
    assert!(matches!(
        r.read_frame(),
        Err(ReadError::UnexpectedEof) | Err(ReadError::Io(_))
    ));
}
