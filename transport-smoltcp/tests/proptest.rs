//! proptest: message sizes × socket buffer sizes × decoder storage, through the Listener and
//! the Writer on `phy::Loopback`; every message arrives once, in order, byte for byte, and is
//! echoed back the same way.

mod common;

use buffstreams_framing::{BigEndian, Config};
use buffstreams_transport_smoltcp::{
    Listener, ListenerConfig, SendError, Slot, Writer, WriterConfig,
};
use common::{Net, PORT, server};
use proptest::prelude::*;

fn roundtrip(sizes: &[usize], rx: usize, tx: usize, reply_room: usize, batch: usize) {
    let max = sizes.iter().copied().max().unwrap_or(0);
    let framing = Config::new().with_max_frame_len(max.max(1));
    let mut net = Net::new();
    let mut listener: Listener<BigEndian<4>, Vec<u8>, Vec<u8>, 1> = {
        let slots = [Slot::new(
            net.tcp(rx, tx),
            vec![0u8; max],
            vec![0u8; reply_room],
        )];
        Listener::new(ListenerConfig::new(PORT).with_framing(framing), slots)
    };
    // The writer's send ring must hold its largest frame whole.
    let h = net.tcp(rx, tx.max(max + 4));
    let mut writer = Writer::<BigEndian<4>, _>::new(
        h,
        server(),
        WriterConfig::new().with_framing(framing),
        vec![0u8; max],
    );
    let msgs: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (i * 131 + j) as u8).collect())
        .collect();
    let (mut sent, mut got, mut echoed) = (0, 0, 0);
    for _ in 0..200_000 {
        net.poll();
        writer.poll(net.iface.context(), &mut net.sockets, net.now);
        listener.poll(&mut net.sockets, net.now, |m, conn| {
            assert_eq!(m, &msgs[got][..], "message {got}");
            got += 1;
            conn.reply(m).unwrap();
        });
        while sent < msgs.len() {
            // Batches of up to `batch` messages, all or nothing; one at a time where a batch
            // could never fit the ring.
            let k = batch.min(msgs.len() - sent);
            let refs: Vec<&[u8]> = msgs[sent..sent + k].iter().map(|m| &m[..]).collect();
            let result = match writer.write_batch(&mut net.sockets, &refs) {
                Err(SendError::ExceedsBuffer { .. }) => {
                    writer.write(&mut net.sockets, refs[0]).map(|_| 1)
                }
                other => other.map(|_| k),
            };
            match result {
                Ok(n) => sent += n,
                Err(SendError::Full { .. } | SendError::NotConnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        writer
            .receive(&mut net.sockets, |m| {
                assert_eq!(m, &msgs[echoed][..], "echo {echoed}");
                echoed += 1;
            })
            .unwrap();
        if echoed == msgs.len() {
            let st = listener.stats();
            assert_eq!((st.protocol_errors, st.truncated), (0, 0));
            return;
        }
    }
    panic!(
        "stalled: sent {sent}, received {got}, echoed {echoed} of {}",
        msgs.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn every_message_once_in_order(
        sizes in prop::collection::vec(0usize..700, 1..60),
        rx in 16usize..1024,
        tx in 16usize..1024,
        batch in 1usize..6,
    ) {
        // Each reply fits the reply buffer whole (the handler's reply is its first).
        let reply_room = sizes.iter().max().copied().unwrap_or(0) + 4;
        roundtrip(&sizes, rx, tx, reply_room, batch);
    }
}
