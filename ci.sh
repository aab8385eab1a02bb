#!/usr/bin/env bash
# Runs every check of the project on a fresh machine (installs what it needs first).
# Usage: ./ci.sh            everything
#        ./ci.sh --quick    skip the fuzz runs
set -uo pipefail
cd "$(dirname "$0")"

QUICK=0
case "${1:-}" in
    "") ;;
    --quick) QUICK=1 ;;
    -h | --help)
        cat <<'HELP'
./ci.sh [--quick]: every check of the project, as CI runs it.

Installs what the checks need first (Debian packages gcc-multilib, qemu-system-arm, iproute2,
and the interop peers golang-go, python3-protobuf, libprotobuf-java, openjdk-17-jdk-headless;
rustup components and targets; the pinned nightly NIGHTLY with Miri and cargo-fuzz, and the
toolchain of the crates' rust-version, beside yours), then runs:
formatting and clippy, rustdoc, all tests (the network-namespace tests and the QEMU firmware
need root and qemu-system-arm, the interop tests the Go, Python and Java peers; with CI set
they fail instead of skipping), a 32-bit run, the loom model of transport-std's writer and its
mutations, Miri, bench smoke runs, no_std builds, the firmware's checks on QEMU, and (not with
--quick) every fuzz target for FUZZ_SECONDS (default 30) seconds. Logs go to target/ci-logs
(LOG_DIR); it ends with "N passed, M failed" and exits non-zero if anything failed. About 20 minutes on 2 cores.
HELP
        exit 0
        ;;
    *)
        echo "ci.sh: unknown argument ${1} (try --help)" >&2
        exit 2
        ;;
esac
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
# Toolchains, pinned: the nightly for cargo-fuzz and Miri (by date, so a new nightly cannot break
# CI), and the oldest Rust the crates declare (`rust-version`), which they must build with.
# Both install beside the user's own toolchains and are only used here by name (`cargo +NAME`);
# the default toolchain is whatever stable rustup has.
NIGHTLY="${NIGHTLY:-nightly-2026-10-30}"
MSRV="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)"
export NIGHTLY MSRV
LOG_DIR="${LOG_DIR:-$PWD/target/ci-logs}"
mkdir -p "$LOG_DIR"

passed=0
failed=0
failures=()

# step NAME CMD...: runs CMD, counts it, keeps its log; the tests' own counts are added below.
step() {
    local name="$1"; shift
    local log="$LOG_DIR/${name//[^A-Za-z0-9_.-]/_}.log"
    local start=$SECONDS
    # Shown while it runs (a terminal sees it replaced by the result line).
    [[ -t 1 ]] && printf '..    %s\r' "$name"
    if ( "$@" ) >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "ok    $name ($((SECONDS - start))s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAIL  $name ($((SECONDS - start))s) — last lines of $log:"
        tail -n 30 "$log" | sed 's/^/      /'
    fi
}

# Tests count one by one: add the numbers from cargo's "test result:" lines.
count_tests() {
    local log="$1" p f
    p=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
    f=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
    tests_passed=$((tests_passed + p))
    tests_failed=$((tests_failed + f))
}
tests_passed=0
tests_failed=0

install() {
    set -e
    # gcc-multilib links the 32-bit (i686) test run; qemu-system-arm runs the firmware
    # (mps2-an385); iproute2 makes the network namespace and TAP device of the smoltcp test;
    # the interop tests' peers (examples/peers): Go, Python protobuf, protobuf-java and a JDK.
    local pkgs=(gcc-multilib qemu-system-arm iproute2 golang-go python3-protobuf libprotobuf-java
        openjdk-17-jdk-headless) missing=()
    for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    rustup component add rustfmt clippy llvm-tools
    rustup target add thumbv7em-none-eabihf thumbv7m-none-eabi thumbv6m-none-eabi \
        riscv32imc-unknown-none-elf i686-unknown-linux-gnu x86_64-apple-darwin
    # The pinned nightly: cargo-fuzz, and Miri for the writer's lanes. The declared MSRV.
    rustup toolchain install "$NIGHTLY" --profile minimal
    rustup +"$NIGHTLY" component add miri rust-src
    rustup toolchain install "$MSRV" --profile minimal
    if [[ -d fuzz ]]; then
        command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    fi
}

echo "== install"
# A subshell: install's `set -e` must not leak into the rest of the script.
if ! (install) >"$LOG_DIR/install.log" 2>&1; then
    echo "FAIL  install — a download or install failed:"; tail -n 30 "$LOG_DIR/install.log"
    echo "0 passed, 1 failed"
    exit 1
fi

# Tests that need root, a network namespace or QEMU fail instead of skipping in CI.
[[ -n "${CI:-}" ]] && export BUFFSTREAMS_NO_SKIP=1

SMOLTCP=buffstreams-transport-smoltcp
echo "== static checks"
step fmt bash -c 'cargo fmt --all --check && (cd fuzz && cargo fmt --check) && (cd framing/nostd-check && cargo fmt --check) && (cd examples/firmware && cargo fmt --check)'
# transport-smoltcp's `log` and `defmt` features exclude each other: one clippy run each.
# The interop peers in Go and Python: formatted and vetted as their languages expect.
step peers-lint bash -c 'test -z "$(gofmt -l examples/peers)" && (cd examples/peers && go vet peer.go) && /usr/bin/python3 -c "import ast; ast.parse(open('"'"'examples/peers/peer.py'"'"').read())"'
step clippy cargo clippy --workspace --exclude "$SMOLTCP" --all-targets --all-features --locked -- -D warnings
step clippy-smoltcp-log cargo clippy -p "$SMOLTCP" --all-targets --features log,proto-ipv6,medium-ip --locked -- -D warnings
step clippy-smoltcp-defmt cargo clippy -p "$SMOLTCP" --target thumbv7em-none-eabihf --features defmt --locked -- -D warnings
step clippy-firmware bash -c 'cd examples/firmware && cargo clippy --release --all-targets --locked -- -D warnings'
# The published crates build with the oldest Rust they declare, and package as crates.io
# would take them (each verified from its tarball, the workspace siblings from a local registry).
step "msrv-$MSRV" bash -c 'cargo +"$MSRV" check --locked -p buffstreams-framing -p buffstreams-transport-std --all-features && cargo +"$MSRV" check --locked -p '"$SMOLTCP"' --features log,proto-ipv6,medium-ip'
step package cargo package --workspace --exclude buffstreams-examples --exclude buffstreams-embassy-example --locked --allow-dirty
step rustdoc bash -c 'export RUSTDOCFLAGS="-D warnings"; cargo doc --workspace --exclude '"$SMOLTCP"' --no-deps --all-features --locked && cargo doc -p '"$SMOLTCP"' --no-deps --features log --locked'

echo "== tests"
rm -f target/tmp/firmware-figures.txt target/tmp/embassy-firmware-figures.txt
step tests cargo test --workspace --locked
count_tests "$LOG_DIR/tests.log"
# The decoder must not panic or wrap on a 32-bit usize either (8-byte headers, huge lengths).
step tests-32bit cargo test -p buffstreams-framing --target i686-unknown-linux-gnu --locked --lib --test split --test oracle
count_tests "$LOG_DIR/tests-32bit.log"
# The transport's non-Linux paths (a fence per message instead of membarrier, a peek instead of
# poll) must at least compile cleanly.
step clippy-macos cargo clippy -p buffstreams-transport-std --target x86_64-apple-darwin --locked -- -D warnings

echo "== the writer's lock-free lanes: a loom model (with its mutations) and Miri"
# The model checks the real lane code (src/writer/lane/loom.rs); loom.sh then weakens one
# ordering or drops one fence at a time and requires the model to fail on each.
step loom bash transport-std/loom.sh
grep -h "^loom:" "$LOG_DIR/loom.log" 2>/dev/null | sed 's/^/      /'
# Miri runs the lane tests (raw copies, threads, the portable fence pair) for undefined
# behaviour and data races.
step miri cargo +"$NIGHTLY" miri test -p buffstreams-transport-std --lib --locked writer::lane
count_tests "$LOG_DIR/miri.log"

echo "== main command (smoke: 1 s, counts and size-checks every message)"
step bench-smoke bash -c 'out=$(cargo run --release --locked -p buffstreams-examples --bin bench -- --peer buffstreams --connections 1 --payload 110 --seconds 1 --json) && echo "$out" && grep -q "\"ok\":true" <<<"$out"'
grep -h '"peer"' "$LOG_DIR/bench-smoke.log" 2>/dev/null | sed 's/^/      /'
# The framing crate's async reader/writer on tokio beside tokio-util's Framed, one short round.
step tokio-bench-smoke cargo run --release --locked -p buffstreams-examples --bin bench -- --peer tokio,tokio-framing --seconds 1 --rounds 1
grep -hE "^(peer|tokio)" "$LOG_DIR/tokio-bench-smoke.log" 2>/dev/null | sed 's/^/      /'
# smoltcp on phy::Loopback beside the raw-byte run; exits non-zero if a message is lost or wrong.
step smoltcp-bench-smoke cargo run --release --locked -p buffstreams-examples --bin smoltcp -- --seconds 0.5 --rounds 1
grep -h "^| " "$LOG_DIR/smoltcp-bench-smoke.log" 2>/dev/null | sed 's/^/      /'

echo "== no_std"
for target in thumbv7em-none-eabihf thumbv6m-none-eabi; do
    step "no_std-$target" cargo build -p buffstreams-framing --target "$target" --locked
    step "no_std-$target-defmt-async" cargo build -p buffstreams-framing --target "$target" --features defmt,async --locked
done
for target in thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    step "no_std-smoltcp-$target" cargo build -p "$SMOLTCP" --target "$target" --locked
    step "no_std-smoltcp-$target-defmt-ipv6" cargo build -p "$SMOLTCP" --target "$target" --no-default-features --features defmt,proto-ipv4,proto-ipv6,medium-ip --locked
done

echo "== firmware on QEMU mps2-an385 (Cortex-M3)"
# The framing crate's checks on the emulated 32-bit core (prints "N passed, M failed").
# The async path on a microcontroller: the framing crate's async reader and writer over an
# embassy-net TcpSocket, built for a Cortex-M4F (the host runs the same code over TAP in the tests).
step no_std-embassy-thumbv7em-none-eabihf cargo build -p buffstreams-embassy-example --lib --target thumbv7em-none-eabihf --locked
# ... and the whole embassy firmware (executor, time driver, LAN9118 driver, embassy-net) for it;
# the tests run it on QEMU's Cortex-M3.
step embassy-firmware-thumbv7em bash -c 'cd examples/firmware && cargo build --release --locked --bin embassy --target thumbv7em-none-eabihf'
step firmware-framing-tests bash -c 'cd examples/firmware && cargo test --release --locked --test framing'
fw_line=$(grep -h "framing on the emulated Cortex-M3" "$LOG_DIR/firmware-framing-tests.log" 2>/dev/null)
echo "      $fw_line"
if [[ $fw_line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    tests_passed=$((tests_passed + BASH_REMATCH[1])); tests_failed=$((tests_failed + BASH_REMATCH[2]))
fi
# The network firmware against a transport-std listener runs in the workspace tests
# (examples/tests/firmware.rs), which leave its figures here:
sed 's/^/      /' target/tmp/firmware-figures.txt target/tmp/embassy-firmware-figures.txt 2>/dev/null || true
firmware_size() {
    set -e
    cd examples/firmware
    cargo build --release --locked --bin firmware
    local bin=target/thumbv7m-none-eabi/release/firmware
    local tools; tools=$(dirname "$(find "$(rustc --print sysroot)" -name llvm-size | head -n1)")
    "$tools/llvm-size" -A "$bin" | awk '$1 ~ /^\.(vector_table|text|rodata|data|bss)$/ { printf "%s %d B  ", $1, $2 } END { print "" }'
    # Symbols the linker kept out of line, by crate (LTO inlines most of our code into main).
    "$tools/llvm-nm" --size-sort -S -t d -C "$bin" | awk '
        $3 ~ /[tTrR]/ { if ($0 ~ /buffstreams_framing/) f += $2; else if ($0 ~ /buffstreams_transport_smoltcp/) t += $2;
                        else if ($0 ~ /__cortex_m_rt_main/) m += $2; else if ($0 ~ /smoltcp::/) s += $2 }
        END { printf "firmware .text by symbol: framing %d B, transport-smoltcp %d B, main (app loop + inlined writer/decoder) %d B, smoltcp %d B\n", f, t, m, s }'
}
step firmware-size firmware_size
grep -hE "^\.vector|^firmware .text" "$LOG_DIR/firmware-size.log" 2>/dev/null | sed 's/^/      /' || true

nostd_check() {
    set -e
    cd framing/nostd-check
    cargo build --release --locked
    ./target/release/buffstreams-nostd-check
    # Negative control: the same binary with one `alloc` use must fail to link.
    if cargo build --release --locked --features alloc-control >alloc-control.log 2>&1; then
        echo "negative control linked: the check cannot detect an allocator"; exit 1
    fi
    grep -q "no global memory allocator" alloc-control.log
    rm -f alloc-control.log
}
step no-alloc-link-check nostd_check

text_size() {
    set -e
    cd framing/nostd-check
    cargo build --release --locked --target thumbv7em-none-eabihf
    local bin=target/thumbv7em-none-eabihf/release/buffstreams-nostd-check
    local tools; tools=$(dirname "$(find "$(rustc --print sysroot)" -name llvm-size | head -n1)")
    "$tools/llvm-size" -A "$bin"
    "$tools/llvm-nm" --size-sort -S -t d "$bin" | awk '
        $3 ~ /[tT]/ { if ($4 ~ /mem(cpy|set|clr|cmp|move)|memclr|compiler_builtins/) rt += $2; else app += $2 }
        END { printf "thumbv7em .text: framing (decoder+encoder+check harness) %d B, compiler-builtins mem* %d B\n", app, rt
              if (app > 2048) { print "over the 2 KiB budget"; exit 1 } }'
}
step thumbv7em-text-size text_size
grep -h "thumbv7em .text" "$LOG_DIR/thumbv7em-text-size.log" 2>/dev/null | sed 's/^/      /'

if [[ -d fuzz ]]; then
    echo "== fuzz"
    step fuzz-check bash -c 'cd fuzz && cargo check --locked --bins'
    if [[ $QUICK == 0 ]]; then
        # The flags `fuzz run` uses (release, with debug assertions and overflow checks), so the
        # runs below reuse this build instead of making their own.
        step fuzz-build bash -c 'cd fuzz && cargo +"$NIGHTLY" fuzz build'
        for target in $(cd fuzz && cargo +"$NIGHTLY" fuzz list); do
            step "fuzz-run-$target" bash -c "cd fuzz && mkdir -p corpus/$target && cargo +$NIGHTLY fuzz run $target corpus/$target -- -max_total_time=$FUZZ_SECONDS -print_final_stats=1"
            grep -hE "stat::number_of_executed_units|stat::average_exec_per_sec" "$LOG_DIR/fuzz-run-$target.log" | sed "s/^/      $target /"
        done
    fi
fi

echo
echo "checks: $passed passed, $failed failed${failures[*]:+ (${failures[*]})}"
echo "tests:  $tests_passed passed, $tests_failed failed"
total_passed=$((passed + tests_passed))
total_failed=$((failed + tests_failed))
echo "$total_passed passed, $total_failed failed"
[[ $total_failed == 0 ]]
