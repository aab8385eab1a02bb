#!/usr/bin/env bash
# The loom model of the writer's lanes (src/writer/lane/loom.rs), then its teeth: each
# mutation below weakens one ordering or drops one fence in the real code, and the model
# must fail on every one. Prints one line per run and exits non-zero if the model fails on
# the real code or passes a mutant.
set -uo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
lane=transport-std/src/writer/lane/mod.rs
model() {
    cargo test -q -p buffstreams-transport-std --lib --release writer::lane::loom -- \
        --test-threads 1 >"$CARGO_TARGET_DIR.log" 2>&1
}
if model; then
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
    else
        echo "loom: mutation '$1' caught"
        caught=$((caught + 1))
    fi
}
mutate "producer publishes with Relaxed" \
    's/None => self\.committed\.store\(len, Ordering::Release\)/None => self.committed.store(len, Ordering::Relaxed)/'
mutate "sender loads committed with Relaxed" \
    's/(let mut sent = self\.lock_tx\(\);\n\s*let committed = self\.committed\.load\(Ordering::)Acquire/${1}Relaxed/'
mutate "producer's fence dropped" \
    's/\} else \{\n(\s*)fence\(Ordering::SeqCst\);/} else {\n${1}let _ = fence;/'
mutate "recycle hands the lane back with Relaxed" \
    's/self\.claimed\.store\(false, Ordering::Release\)/self.claimed.store(false, Ordering::Relaxed)/'
mutate "claim takes the lane with Relaxed" \
    's/\.compare_exchange\(false, true, Ordering::Acquire, Ordering::Relaxed\)/.compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)/'
echo "loom: $caught mutations caught, $missed missed"
[ "$missed" -eq 0 ]
