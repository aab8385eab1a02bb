//! The two primitives every role is built on: one frame into a socket's send ring, and every
//! frame out of its receive ring. Usable on their own with sockets you manage yourself.

use core::ops::ControlFlow;

use buffstreams_framing::{Decoder, Encoder, Event, LengthPrefix, MAX_HEADER_LEN, Storage};
use smoltcp::socket::tcp;

use crate::error::{RecvError, SendError};

/// Bytes free in the socket's send ring.
#[inline]
pub fn write_room(socket: &tcp::Socket<'_>) -> usize {
    socket.send_capacity().saturating_sub(socket.send_queue())
}

/// Queues one frame (header, then `payload`) in the socket's send ring: all of it or nothing.
///
/// The free space is checked against the frame's encoded length first. When the ring's
/// contiguous window holds the frame, header and payload are copied straight into it inside
/// one `send(|window| ..)`; when the window is cut short by the ring's end, the parts go in
/// turn (the ring has room for all of them, so the frame is never split by a full ring).
/// Returns the bytes queued, header included. The bytes leave on the next `Interface::poll`.
///
/// # Errors
/// [`SendError::Full`] when the ring lacks room now (nothing queued: try after the next poll),
/// [`SendError::ExceedsBuffer`] when the frame is larger than the whole ring,
/// [`SendError::NotConnected`] when the socket cannot send, [`SendError::Encode`] when the
/// payload cannot be framed. Never `Ok(0)`.
///
/// # Examples
/// ```
/// use buffstreams_framing::{BigEndian, Encoder};
/// use buffstreams_transport_smoltcp::{SendError, write_frame};
/// use smoltcp::socket::tcp;
///
/// let mut socket = tcp::Socket::new(
///     tcp::SocketBuffer::new(vec![0; 64]),
///     tcp::SocketBuffer::new(vec![0; 64]),
/// );
/// let encoder = Encoder::<BigEndian<4>>::default();
/// // Not connected yet: refused, nothing queued.
/// assert_eq!(write_frame(&mut socket, &encoder, b"hi"), Err(SendError::NotConnected));
/// assert_eq!(socket.send_queue(), 0);
/// ```
pub fn write_frame<H: LengthPrefix>(
    socket: &mut tcp::Socket<'_>,
    encoder: &Encoder<H>,
    payload: &[u8],
) -> Result<usize, SendError> {
    let header = encoder.header(payload.len())?;
    let needed = header
        .len()
        .checked_add(payload.len())
        .ok_or(SendError::Encode(
            buffstreams_framing::EncodeError::FrameTooLong {
                len: payload.len(),
                max: encoder.max_frame_len(),
            },
        ))?;
    check_room(socket, needed)?;
    let whole = socket
        .send(|window| {
            if window.len() < needed {
                return (0, false);
            }
            // With room to spare, the header goes as one fixed-size copy of its padded form
            // (the payload then overwrites the padding): no variable-length memcpy for it.
            if let Some(padded) = window.get_mut(..MAX_HEADER_LEN) {
                padded.copy_from_slice(header.padded());
            } else if let Some(head) = window.get_mut(..header.len()) {
                head.copy_from_slice(&header);
            }
            if let Some(body) = window.get_mut(header.len()..needed) {
                body.copy_from_slice(payload);
            }
            (needed, true)
        })
        .map_err(|_| SendError::NotConnected)?;
    if !whole {
        send_parts(socket, header.as_bytes(), payload)?;
    }
    Ok(needed)
}

/// Queues several frames in the send ring as one unit: all of them or none.
///
/// The batch's encoded length is checked against the free space first, then every frame is
/// copied inside one `send(|window| ..)` (one ring update for the whole batch, which is what
/// makes it cheaper per message than [`write_frame`] in a loop); when the window is cut short by
/// the ring's end, the parts go in turn. Returns the bytes queued.
///
/// # Errors
/// As [`write_frame`], for the batch as a whole: [`SendError::Full`] and
/// [`SendError::ExceedsBuffer`] compare the whole batch with the ring, and a payload that
/// cannot be framed fails the batch before anything is queued.
///
/// # Examples
/// ```
/// use buffstreams_framing::{BigEndian, Encoder};
/// use buffstreams_transport_smoltcp::{SendError, write_frames};
/// use smoltcp::socket::tcp;
///
/// let mut socket = tcp::Socket::new(
///     tcp::SocketBuffer::new(vec![0; 64]),
///     tcp::SocketBuffer::new(vec![0; 64]),
/// );
/// let encoder = Encoder::<BigEndian<4>>::default();
/// let batch: [&[u8]; 2] = [b"temperature 21.5", b"humidity 40"];
/// assert_eq!(write_frames(&mut socket, &encoder, &batch), Err(SendError::NotConnected));
/// ```
pub fn write_frames<H: LengthPrefix>(
    socket: &mut tcp::Socket<'_>,
    encoder: &Encoder<H>,
    payloads: &[&[u8]],
) -> Result<usize, SendError> {
    let mut needed = 0usize;
    for payload in payloads {
        let n = encoder.encoded_len(payload.len())?;
        needed = needed.checked_add(n).ok_or(SendError::ExceedsBuffer {
            needed: usize::MAX,
            capacity: socket.send_capacity(),
        })?;
    }
    check_room(socket, needed)?;
    let whole = socket
        .send(|window| {
            let Some(room) = window.get_mut(..needed) else {
                return (0, false);
            };
            let mut at = 0usize;
            for payload in payloads {
                // Every header was computed above and the encoder is deterministic.
                let Ok(header) = encoder.header(payload.len()) else {
                    return (0, false);
                };
                let body_at = at.saturating_add(header.len());
                let end = body_at.saturating_add(payload.len());
                match room.get_mut(at..body_at) {
                    Some(head) => head.copy_from_slice(&header),
                    None => return (0, false),
                }
                match room.get_mut(body_at..end) {
                    Some(body) => body.copy_from_slice(payload),
                    None => return (0, false),
                }
                at = end;
            }
            // Whole frames only: either all `needed` bytes or nothing is enqueued.
            if at == needed {
                (needed, true)
            } else {
                (0, false)
            }
        })
        .map_err(|_| SendError::NotConnected)?;
    if !whole {
        for payload in payloads {
            send_parts(socket, &encoder.header(payload.len())?, payload)?;
        }
    }
    Ok(needed)
}

/// Whether the socket can take `needed` bytes now, as one unit.
fn check_room(socket: &tcp::Socket<'_>, needed: usize) -> Result<(), SendError> {
    if !socket.may_send() {
        return Err(SendError::NotConnected);
    }
    let capacity = socket.send_capacity();
    if needed > capacity {
        return Err(SendError::ExceedsBuffer { needed, capacity });
    }
    let free = write_room(socket);
    if needed > free {
        return Err(SendError::Full { needed, free });
    }
    Ok(())
}

/// The fallback when the ring's contiguous window ends before the frame: header, then
/// payload, each wrapping as needed. `check_room` found room for all of it, so each part is
/// taken in full.
fn send_parts(
    socket: &mut tcp::Socket<'_>,
    header: &[u8],
    payload: &[u8],
) -> Result<(), SendError> {
    for part in [header, payload] {
        let n = socket
            .send_slice(part)
            .map_err(|_| SendError::NotConnected)?;
        debug_assert_eq!(n, part.len(), "check_room found room for the whole frame");
    }
    Ok(())
}

/// Decodes every frame the socket's receive ring holds, handing each event to `on_event`.
///
/// The decoder runs inside `recv(|ring| ..)`: a frame that lies wholly inside the ring's
/// contiguous window is passed as a borrow of the ring (no copy); a frame cut by the ring's
/// wrap or still arriving is assembled in the decoder's storage, and the bytes after the wrap
/// are read by a second `recv`. Bytes are consumed from the ring exactly as far as the decoder
/// consumed them, so each event is delivered once. Returning `ControlFlow::Break` from
/// `on_event` stops before the next frame is decoded (its bytes stay in the ring).
///
/// Returns the bytes consumed (0 when the ring was empty).
///
/// # Errors
/// [`RecvError::Decode`] when the peer broke the protocol (the decoder is then failed: abort
/// the connection), [`RecvError::NotConnected`] when the socket cannot receive.
pub fn read_frames<H, S, F>(
    socket: &mut tcp::Socket<'_>,
    decoder: &mut Decoder<H, S>,
    mut on_event: F,
) -> Result<usize, RecvError>
where
    H: LengthPrefix,
    S: Storage,
    F: FnMut(Event<'_>) -> ControlFlow<()>,
{
    let mut total = 0usize;
    // Each round consumes at least one byte or stops, and the ring holds a bounded number
    // of bytes: the loop ends.
    while socket.can_recv() {
        let (consumed, outcome) = socket
            .recv(|ring| {
                let (consumed, outcome) = drain(decoder, ring, &mut on_event);
                (consumed, (consumed, outcome))
            })
            .map_err(|_| RecvError::NotConnected)?;
        total = total.saturating_add(consumed);
        match outcome {
            Drained::All => {}
            Drained::Stopped => break,
            Drained::Failed(e) => return Err(RecvError::Decode(e)),
        }
    }
    Ok(total)
}

enum Drained {
    All,
    Stopped,
    Failed(buffstreams_framing::DecodeError),
}

/// Decodes `ring` (one contiguous window) to its end or until `on_event` breaks.
#[inline]
fn drain<H, S, F>(decoder: &mut Decoder<H, S>, ring: &[u8], on_event: &mut F) -> (usize, Drained)
where
    H: LengthPrefix,
    S: Storage,
    F: FnMut(Event<'_>) -> ControlFlow<()>,
{
    let mut pos = 0usize;
    loop {
        let input = ring.get(pos..).unwrap_or_default();
        if input.is_empty() {
            return (pos, Drained::All);
        }
        let decoded = match decoder.decode(input) {
            Ok(d) => d,
            Err(e) => return (pos, Drained::Failed(e)),
        };
        pos = pos.saturating_add(decoded.consumed).min(ring.len());
        if let Some(found) = decoded.found {
            let Some(event) = decoder.event(input, found) else {
                // Only a custom Storage that breaks its contract gets here.
                return (
                    pos,
                    Drained::Failed(buffstreams_framing::DecodeError::Storage),
                );
            };
            if on_event(event).is_break() {
                return (pos, Drained::Stopped);
            }
        }
    }
}
