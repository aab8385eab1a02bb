#!/usr/bin/env bash
# The loom model of the writer's lanes (src/writer/lane/loom.rs), then its teeth: each
# mutation below weakens one ordering or drops one fence in the real code, and the model
# must fail on every one. Prints one line per run and exits non-zero if the model fails on
# the real code or passes a mutant. A mutant is caught only when the model ran and a test of it
# failed; one that breaks the build or runs into a loom limit is not.
#
# LOOM_PLANT=build: skip the real code and run one mutant that breaks the build (ci.sh's
# self-test, which requires it to be counted as not caught).
set -uo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
lane=transport-std/src/writer/lane/mod.rs
log="$CARGO_TARGET_DIR.log"
model() {
    cargo test -q -p buffstreams-transport-std --lib --release writer::lane::loom -- \
        --test-threads 1 >"$log" 2>&1
}
# After a failed `model`: why it failed.
verdict() {
    if grep -qE "could not compile|^error\[E[0-9]+\]" "$log"; then
        echo "broke the build"
    elif grep -q "Model exceeded maximum number of branches" "$log"; then
        echo "ran into loom's branch limit"
    elif grep -qE "test result: FAILED|panicked at transport-std/src/writer/lane/loom\.rs|Causality violation|deadlock" "$log"; then
        # A model test failed (loom may then abort while unwinding, leaving no result line).
        echo "caught"
    else
        echo "failed without a failing test"
    fi
}
if [[ "${LOOM_PLANT:-}" == build ]]; then
    : # the planted mutant alone, below
elif model; then
    echo "loom: the lane model passes on the real code"
else
    tail -30 "$CARGO_TARGET_DIR.log"
    echo "loom: FAILED on the real code"
    exit 1
fi
backup=$(mktemp)
cp "$lane" "$backup"
trap 'cp "$backup" "$lane"; rm -f "$backup"' EXIT
caught=0 missed=0
mutate() { # name, perl substitution (must change the file)
    cp "$backup" "$lane"
    perl -0pi -e "$2" "$lane"
    if cmp -s "$backup" "$lane"; then
        echo "loom: mutation '$1' no longer applies: update loom.sh"
        missed=$((missed + 1))
        return
    fi
    if model; then
        echo "loom: mutation '$1' was NOT caught"
        missed=$((missed + 1))
        return
    fi
    local why; why=$(verdict)
    if [[ $why == caught ]]; then
        echo "loom: mutation '$1' caught"
        caught=$((caught + 1))
    else
        tail -5 "$log"
        echo "loom: mutation '$1' NOT caught: it $why"
        missed=$((missed + 1))
    fi
}
if [[ "${LOOM_PLANT:-}" == build ]]; then
    mutate "planted: a mutant that breaks the build" \
        's/(pub\(crate\) fn has_pending\(&self\) -> bool \{)/${1} compile_error!("planted");/'
    echo "loom: $caught mutations caught, $missed missed"
    [ "$missed" -eq 0 ]
    exit
fi
mutate "producer publishes with Relaxed" \
    's/self\.committed\.store\(committed, Ordering::Release\)/self.committed.store(committed, Ordering::Relaxed)/'
mutate "sender loads committed with Relaxed" \
    's/(let mut sent = self\.lock_tx\(\);\n(?:.*\n){0,4}?\s*let committed = self\.committed\.load\(Ordering::)Acquire/${1}Relaxed/'
mutate "sender finds the buffer before taking tx (the producer may be replacing it)" \
    's/(\n\s*)(let mut sent = self\.lock_tx\(\);)(\n\s*\/\/ SAFETY: holding `tx`: the producer does not replace the buffer meanwhile\.\n\s*let Some\(buf\) = \(unsafe \{ self\.buf\.get\(\) \}\) else \{\n\s*return false;\n\s*\};)/$3$1$2/'
mutate "producer's fence dropped" \
    's/\} else \{\n(\s*)fence\(Ordering::SeqCst\);/} else {\n${1}let _ = fence;/'
mutate "recycle hands the lane back with Relaxed" \
    's/self\.claimed\.store\(false, Ordering::Release\)/self.claimed.store(false, Ordering::Relaxed)/'
mutate "claim takes the lane with Relaxed" \
    's/\.compare_exchange\(false, true, Ordering::Acquire, Ordering::Relaxed\)/.compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)/'
echo "loom: $caught mutations caught, $missed missed"
[ "$missed" -eq 0 ]
