//! The acknowledged mode's sender and receiver against each other over a channel the fuzzer
//! breaks: its bytes are the sizes (messages, window, session table) and a script of cuts at
//! any byte, late bytes of old connections, listener restarts, time jumps, failing callbacks
//! and give-ups. After the script the channel heals. Every delivery must carry the number the
//! writer gave its message, in order without a gap, every repeat marked `may_repeat`, and in
//! the end every message delivered or given up (see `buffstreams_framing::harness::acked`).
#![no_main]

use buffstreams_framing::harness::acked::{Action, Setup, Sim};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((sizes, script)) = data.split_first_chunk::<4>() else {
        return;
    };
    Sim::run(Setup::from_bytes(sizes), &Action::script(script));
});
