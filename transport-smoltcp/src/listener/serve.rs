//! One slot's share of a listener's poll: ingest, dispatch, transmit, lifecycle; in the
//! acknowledged mode also the hello, each message's number and the acknowledgements.

use core::ops::ControlFlow;

use buffstreams_framing::acked::{ACK_LEN, SessionSlot, Sessions, WELCOME_LEN};
use buffstreams_framing::{Encoder, Event, LengthPrefix, MAX_HEADER_LEN, Storage};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use super::acked::Opened;
use super::slot::{Conn, Connection, reply_kind};
use crate::config::ListenerConfig;
use crate::error::RecvError;
use crate::socket::read_frames;
use crate::stats::ListenerStats;

/// What a slot's poll shares with the others.
pub(super) struct Ctx<'a, H, T> {
    pub(super) encoder: &'a Encoder<H>,
    /// Listener-to-writer frames in the acknowledged mode (one byte more than a message).
    pub(super) back: &'a Encoder<H>,
    pub(super) stats: &'a mut ListenerStats,
    pub(super) config: &'a ListenerConfig,
    /// The writer sessions, in the acknowledged mode.
    pub(super) sessions: Option<&'a mut Sessions<T>>,
    pub(super) now: Instant,
    /// Ids of connections, never reused.
    pub(super) next_conn: &'a mut u64,
}

/// How a slot's poll ended.
pub(super) enum Served {
    Done,
    /// The connection's writer session is held by the connection numbered so, which must end
    /// before this slot is served again.
    Held(u64),
}

impl<H: LengthPrefix, T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>> Ctx<'_, H, T> {
    /// Ends slot `id`'s connection: its session goes back to the table.
    pub(super) fn end<S: Storage, B: AsMut<[u8]>>(&mut self, conn: &mut Conn<H, S, B>) {
        if let Some(sessions) = self.sessions.as_deref_mut() {
            conn.acked.close(sessions, self.now);
        }
        conn.end();
    }
}

pub(super) fn serve<H, S, B, T, F>(
    id: usize,
    conn: &mut Conn<H, S, B>,
    socket: &mut tcp::Socket<'_>,
    ctx: &mut Ctx<'_, H, T>,
    handler: &mut F,
) -> Served
where
    H: LengthPrefix,
    S: Storage,
    B: AsMut<[u8]>,
    T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
    F: FnMut(&[u8], &mut Connection<'_, H, B>),
{
    let port = ctx.config.port;
    match socket.state() {
        tcp::State::Closed | tcp::State::TimeWait => {
            if conn.open {
                // Reset by the peer, or our close completed.
                if conn.decoder.is_mid_frame() {
                    ctx.stats.truncated = ctx.stats.truncated.saturating_add(1);
                    warn!("slot {}: connection ended inside a frame", id);
                }
                ctx.end(conn);
            }
            // TimeWait only follows a close we started; the slot is worth more than the wait.
            socket.abort();
            if socket.listen(port).is_err() {
                ctx.stats.listen_errors = ctx.stats.listen_errors.saturating_add(1);
                warn!("slot {}: cannot listen on port {}", id, port);
            }
            return Served::Done;
        }
        tcp::State::Listen | tcp::State::SynReceived => return Served::Done,
        _ => {}
    }
    let remote = socket.remote_endpoint();
    let now = ctx.now;
    if !conn.open {
        conn.open = true;
        conn.closing = false;
        conn.last_rx = now;
        conn.frame_since = None;
        conn.decoder.reset();
        conn.staged.len = 0;
        conn.acked
            .start(*ctx.next_conn, ctx.config.ack_delay.total_micros());
        *ctx.next_conn = ctx.next_conn.wrapping_add(1);
        ctx.stats.connections_total = ctx.stats.connections_total.saturating_add(1);
        debug!("slot {}: accepted {:?}", id, remote);
    }
    conn.staged.flush(socket);
    let acked = ctx.sessions.is_some();
    // The hello, then the welcome, staged whole: with too little room, the opening waits.
    if let Some(sessions) = ctx.sessions.as_deref_mut()
        && !conn.acked.is_open()
        && conn.staged.free() >= WELCOME_LEN + MAX_HEADER_LEN
    {
        match conn.acked.open(socket, sessions, now) {
            Ok(Opened::Open(welcome)) => {
                // The room was checked: staging cannot fail.
                let _ = conn.staged.push(ctx.back, None, &welcome);
                conn.staged.flush(socket);
            }
            Ok(Opened::Waiting) => {}
            Ok(Opened::Held(by)) => return Served::Held(by),
            Ok(Opened::Stale) => {
                ctx.stats.superseded = ctx.stats.superseded.saturating_add(1);
                socket.abort();
                ctx.end(conn);
                return Served::Done;
            }
            Ok(Opened::Refused) | Err(_) => {
                ctx.stats.handshake_errors = ctx.stats.handshake_errors.saturating_add(1);
                warn!("slot {}: {:?} refused at the hello", id, remote);
                socket.abort();
                ctx.end(conn);
                return Served::Done;
            }
        }
    }
    // Whether a message ended in this poll: the one arriving now began in it.
    let mut completed = false;
    // Ingest and dispatch while the previous replies have gone into the send ring: a peer that
    // does not read its replies stops being read (TCP's window then holds it back).
    let ready = !acked || conn.acked.is_open();
    while ready && !conn.closing && conn.staged.len == 0 && socket.can_recv() {
        let (decoder, staged, closing, numbers) = (
            &mut conn.decoder,
            &mut conn.staged,
            &mut conn.closing,
            &mut conn.acked,
        );
        let stats = &mut *ctx.stats;
        let encoder = if acked { ctx.back } else { ctx.encoder };
        let received = read_frames(socket, decoder, |event| {
            completed = true;
            match event {
                Event::Frame(msg) => {
                    stats.messages_in = stats.messages_in.saturating_add(1);
                    stats.bytes_in = stats.bytes_in.saturating_add(msg.len() as u64);
                    let delivery = if acked { numbers.number() } else { None };
                    let mut c = Connection {
                        id,
                        remote,
                        encoder,
                        staged: &mut *staged,
                        closing: &mut *closing,
                        stats: &mut *stats,
                        kind: reply_kind(acked),
                        delivery,
                    };
                    let len = msg.len();
                    handler(msg, &mut c);
                    // The handler returned: in the acknowledged mode the message is delivered.
                    if let Some(d) = delivery {
                        numbers.delivered(d, len);
                    }
                    if staged.len > 0 || *closing {
                        return ControlFlow::Break(());
                    }
                }
                Event::Skipped(len) => {
                    // It keeps its number: `Oversize::Skip` is the application's choice.
                    if let Some(d) = numbers.number().filter(|_| acked) {
                        numbers.delivered(d, usize::try_from(len).unwrap_or(usize::MAX));
                    }
                    stats.skipped = stats.skipped.saturating_add(1);
                    warn!("slot {}: skipped an oversize frame of {} bytes", id, len);
                }
                _ => {}
            }
            ControlFlow::Continue(())
        });
        match received {
            Ok(0) => break,
            Ok(_) => conn.last_rx = now,
            Err(RecvError::Decode(e)) => {
                ctx.stats.protocol_errors = ctx.stats.protocol_errors.saturating_add(1);
                warn!("slot {}: peer {:?} broke the protocol: {}", id, remote, e);
                socket.abort();
                ctx.end(conn);
                return Served::Done;
            }
            Err(_) => break,
        }
        conn.staged.flush(socket);
    }
    if acked
        && conn.staged.free() >= ACK_LEN + MAX_HEADER_LEN
        && let Some(ack) = conn.acked.acknowledge(now)
        && conn.staged.push(ctx.back, None, &ack).is_ok()
    {
        ctx.stats.acks_out = ctx.stats.acks_out.saturating_add(1);
    }
    conn.staged.flush(socket);
    lifecycle(id, conn, socket, ctx, completed, remote);
    Served::Done
}

/// Deadlines and closes after a slot's ingest.
fn lifecycle<H, S, B, T>(
    id: usize,
    conn: &mut Conn<H, S, B>,
    socket: &mut tcp::Socket<'_>,
    ctx: &mut Ctx<'_, H, T>,
    completed: bool,
    remote: Option<smoltcp::wire::IpEndpoint>,
) where
    H: LengthPrefix,
    S: Storage,
    B: AsMut<[u8]>,
    T: AsRef<[SessionSlot]> + AsMut<[SessionSlot]>,
{
    let now = ctx.now;
    let config = ctx.config;
    // The frame deadline runs from a message's first byte to its last, whatever the pace; it
    // restarts with every message, so a peer streaming without pause is never cut. A hello
    // that has begun counts as a frame.
    if conn.decoder.is_mid_frame() || conn.acked.is_mid_hello() {
        if completed {
            conn.frame_since = Some(now);
        }
        let since = *conn.frame_since.get_or_insert(now);
        if config
            .frame_timeout
            .is_some_and(|limit| now >= since + limit)
        {
            ctx.stats.frame_timeouts = ctx.stats.frame_timeouts.saturating_add(1);
            warn!(
                "slot {}: peer {:?} did not finish a message in time, aborting",
                id, remote
            );
            socket.abort();
            ctx.end(conn);
            return;
        }
    } else {
        conn.frame_since = None;
    }
    if conn.closing && conn.staged.len == 0 {
        socket.close();
    } else if socket.state() == tcp::State::CloseWait && !socket.can_recv() {
        // The peer finished sending and everything it sent is handled.
        if conn.decoder.is_mid_frame() {
            ctx.stats.truncated = ctx.stats.truncated.saturating_add(1);
            warn!("slot {}: peer {:?} closed inside a frame", id, remote);
            conn.decoder.reset();
        }
        if conn.staged.len == 0 {
            socket.close();
        }
    } else if config
        .idle_timeout
        .is_some_and(|limit| now >= conn.last_rx + limit)
    {
        // Also ends a close that a peer never completes (FIN-WAIT-2 has no timer in smoltcp).
        ctx.stats.idle_timeouts = ctx.stats.idle_timeouts.saturating_add(1);
        warn!("slot {}: peer {:?} idle, aborting", id, remote);
        socket.abort();
        ctx.end(conn);
    }
}
