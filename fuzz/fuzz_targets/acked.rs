//! The acknowledged mode's parsers on fuzzer-chosen bytes (they come from the network): no
//! panic; a hello is judged from its bytes so far and never changes its mind as more arrive;
//! whatever parses re-encodes to exactly the bytes it came from.
#![no_main]

use buffstreams_framing::acked::{Back, HELLO_LEN, Hello, ack, welcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = Hello::parse(data);
    let mut verdict = None;
    for cut in 0..=data.len().min(HELLO_LEN) {
        match Hello::parse(&data[..cut]) {
            Ok(None) => assert!(cut < HELLO_LEN && verdict.is_none()),
            Ok(Some(h)) => {
                assert_eq!(cut, HELLO_LEN);
                assert_eq!(h.encode(), data[..HELLO_LEN]);
                assert!(h.first_seq >= 1 && h.resent_until >= h.first_seq - 1);
            }
            Err(e) => {
                // An error, once found, stays the same error.
                assert!(verdict.is_none_or(|v| v == e));
                verdict = Some(e);
            }
        }
    }
    if let Some(e) = verdict {
        assert_eq!(whole, Err(e));
    }
    match Back::parse(data) {
        Ok(Back::Ack { delivered }) => assert_eq!(ack(delivered), data),
        Ok(Back::Welcome { delivered, .. }) => assert_eq!(welcome(delivered), data),
        Ok(Back::Reply(r)) => assert_eq!(r, &data[1..]),
        Ok(_) => unreachable!("a new kind"),
        Err(_) => {}
    }
});
