#!/usr/bin/env bash
# The acknowledged mode's machines (src/acked/) with one planted bug at a time: each mutation
# below breaks the real code the way a plausible bug would, and the property test that runs
# the sender against the receiver over a hostile channel (src/acked/tests.rs) must fail on
# every one. The mutants marked `crash` must also fail transport-std's crash tests
# (tests/acked_crash.rs: real processes, a listener SIGKILLed and restarted, a proxy holding
# acknowledgements back). A mutant counts as caught only when the tests built and one of
# them failed. Prints one line per judge and mutant; exits non-zero if the real code fails
# or a mutant is missed.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/mutants"
export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
log="$CARGO_TARGET_DIR.log"
tests() {
    cargo test -q --release -p buffstreams-framing --lib acked:: >"$log" 2>&1
}
crash() {
    cargo test -q -p buffstreams-transport-std --test acked_crash >"$log" 2>&1
}
verdict() {
    if grep -qE "could not compile|^error\[E[0-9]+\]" "$log"; then
        echo "broke the build"
    elif grep -q "test result: FAILED" "$log"; then
        echo "caught"
    else
        echo "failed without a failing test"
    fi
}
for judge in tests crash; do
    if $judge; then
        echo "mutants: the $judge pass on the real code"
    else
        tail -30 "$log"
        echo "mutants: the $judge FAILED on the real code"
        exit 1
    fi
done
dir=framing/src/acked
backup=$(mktemp -d)
cp "$dir"/*.rs "$backup"/
trap 'cp "$backup"/*.rs "$dir"/; rm -rf "$backup"' EXIT
caught=0 missed=0
# judge NAME TESTS: runs TESTS (tests or crash) on the mutated code; it must fail a test.
judge() {
    if $2; then
        echo "mutants: '$1' was NOT caught by the $2"
        missed=$((missed + 1))
        return
    fi
    local why; why=$(verdict)
    if [[ $why == caught ]]; then
        echo "mutants: '$1' caught by the $2: $(grep -E '^    [a-z_]+(::[a-z_]+)*$' "$log" | sed 's/.*:://; s/^ *//' | sort -u | paste -sd, -)"
        caught=$((caught + 1))
    else
        tail -5 "$log"
        echo "mutants: '$1' NOT caught by the $2: it $why"
        missed=$((missed + 1))
    fi
}
mutate() { # name, file, perl substitution (must change the file), [crash]
    cp "$backup"/*.rs "$dir"/
    perl -0pi -e "$3" "$dir/$2"
    if cmp -s "$backup/$2" "$dir/$2"; then
        echo "mutants: '$1' no longer applies: update acked-mutants.sh"
        missed=$((missed + 1))
        return
    fi
    judge "$1" tests
    if [[ "${4:-}" == crash ]]; then
        judge "$1" crash
    fi
}
# Not judged by the crash tests: transport-std shuts an old connection down before it opens
# the next, so no late acknowledgement reaches its machine there (a second defence).
mutate "sender: acknowledgements of an older connection count" sender.rs \
    's/if epoch != self\.epoch \{\n(\s*)return Ok\(Received::Stale\);/if false {\n${1}return Ok(Received::Stale);/'
mutate "sender: no re-send after a reconnect" sender.rs \
    's/let cursor = self\.window\.front\(\)\.map\(/let cursor: Option<Cursor> = None.map(/' crash
mutate "sender: resumes at the start of the batch, not at the welcome's message" sender.rs \
    's/let skip = self\.offset_of\(&batch, delivered\.saturating_add\(1\)\.saturating_sub\(seq\)\);/let skip = 0;/'
mutate "sender: what was written is not remembered for the next hello" sender.rs \
    's/(self\.written = self\n\s*\.written\n\s*)\.max\(/${1}.min(/'
mutate "receiver: numbers from the hello's first_seq, not after what was delivered" receiver.rs \
    's/next_seq: hello\.first_seq\.max\(delivered\.saturating_add\(1\)\)/next_seq: hello.first_seq/'
mutate "receiver: never says may_repeat" receiver.rs \
    's/may_repeat: seq <= s\.opened\.doubt/may_repeat: false/' crash
mutate "receiver: acknowledges what it numbered, not what was delivered" receiver.rs \
    's/ack\(s\.delivered\)\n/ack(s.next_seq.saturating_sub(1))\n/'
mutate "sessions: doubt forgotten once a session is known" sessions.rs \
    's/known: true,\n(\s*)doubt: slot\.doubt,/known: true,\n${1}doubt: 0,/'
mutate "sessions: a late hello opens a session it forgot" sessions.rs \
    's/if conn < forgot_conn \{/if false {/'
mutate "sessions: two connections may serve one session" sessions.rs \
    's/slot\.holder\.filter\(\|&by\| by != conn\)/slot.holder.filter(|_| false)/'
mutate "window: the newest batch kept beside the storage goes stale as it grows" window.rs \
    's/self\.tail = Some\(grown\);\n//'
echo "mutants: $caught caught, $missed missed"
[ "$missed" -eq 0 ]
