#!/usr/bin/env bash
# Runs every check of the project on a fresh machine (installs what it needs first).
# Usage: ./ci.sh              everything
#        ./ci.sh --quick      skip the fuzz runs
#        ./ci.sh --self-test  only the self-test: planted failures must turn their steps red
set -uo pipefail
cd "$(dirname "$0")"

QUICK=0
SELF_TEST_ONLY=0
case "${1:-}" in
    "") ;;
    --quick) QUICK=1 ;;
    --self-test) SELF_TEST_ONLY=1 ;;
    -h | --help)
        cat <<'HELP'
./ci.sh [--quick | --self-test]: every check of the project, as CI runs it.

Installs what the checks need first (Debian packages gcc-multilib, qemu-system-arm, iproute2,
and the interop peers golang-go, python3-protobuf, libprotobuf-java, openjdk-17-jdk-headless,
openssl;
rustup components and targets; the pinned nightly NIGHTLY with Miri and cargo-fuzz, and the
toolchain of the crates' rust-version, beside yours), then runs:
formatting and clippy, rustdoc and docs.rs-style builds, the READMEs' links and lists, all tests (the network-namespace tests and the QEMU firmware
need root and qemu-system-arm, the interop tests the Go, Python, Java and openssl peers; with CI set
they fail instead of skipping), a 32-bit run, the loom model of transport-std's writer and its
mutations, Miri, bench smoke runs, no_std builds, the firmware's checks on QEMU, and (not with
--quick) every fuzz target for FUZZ_SECONDS (default 30) seconds. Logs go to target/ci-logs
(LOG_DIR); it ends with "N passed, M failed" and exits non-zero if anything failed. About 20 minutes on 2 cores.

Every step runs with errexit and pipefail: its first failing command fails it. Steps that
could pass having run nothing check counts: Miri must run at least MIN_MIRI_TESTS lane tests,
the fuzz loop every target of fuzz/Cargo.toml (at least MIN_FUZZ_TARGETS), the interop tests
every peer (Go, Python, Java, tokio-util). --self-test (also run as a step of the full run)
plants a failing command in each kind of step (install, build, run, size check, count check,
loom's mutants, a test whose tool is missing under BUFFSTREAMS_NO_SKIP) and requires each to
turn that step into FAIL.

CI runs it through .ci/run, as root, with CI and BUFFSTREAMS_NO_SKIP set: tests that need
root, QEMU or a peer fail instead of skipping.
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
# CMD runs in a subshell with errexit and pipefail, and not as an `if` or `!` condition: bash
# ignores errexit for anything run as a condition (subshell or not), so a step function would
# otherwise pass whenever its last command did.
step() {
    local name="$1"; shift
    local log="$LOG_DIR/${name//[^A-Za-z0-9_.-]/_}.log"
    local start=$SECONDS
    # Shown while it runs (a terminal sees it replaced by the result line).
    [[ -t 1 ]] && printf '..    %s\r' "$name"
    (
        set -eo pipefail
        "$@"
    ) >"$log" 2>&1
    local status=$?
    if [[ $status == 0 ]]; then
        passed=$((passed + 1))
        echo "ok    $name ($((SECONDS - start))s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAIL  $name ($((SECONDS - start))s, status $status) — last lines of $log:"
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

# At least this many: Miri's lane tests, fuzz targets (raise it when adding one).
MIN_MIRI_TESTS=4
MIN_FUZZ_TARGETS=9
# The interop peers that must each have run an exchange (examples/tests/interop).
INTEROP_PEERS=(go python java tokio-util python-ssl openssl tokio-rustls)
# Where the interop tests record the peers that ran (CARGO_TARGET_TMPDIR/interop-ran).
INTEROP_RAN_DIR="${INTEROP_RAN_DIR:-target/tmp/interop-ran}"

install() {
    # gcc-multilib links the 32-bit (i686) test run; qemu-system-arm runs the firmware
    # (mps2-an385); iproute2 makes the network namespace and TAP device of the smoltcp test;
    # the interop tests' peers (examples/peers): Go, Python protobuf, protobuf-java and a JDK,
    # and for TLS the openssl command-line tools.
    local pkgs=(gcc-multilib qemu-system-arm iproute2 golang-go python3-protobuf libprotobuf-java
        openjdk-17-jdk-headless openssl) missing=() p
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
    if [[ -d fuzz ]] && ! command -v cargo-fuzz >/dev/null; then
        cargo install --locked cargo-fuzz
    fi
}

# The sum of the "N passed" of cargo's "test result:" lines in a log.
tests_in() {
    { grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$1" || true; } | awk '{s+=$4} END {print s+0}'
}

# Miri runs the lane tests (raw copies, threads, the portable fence pair) for undefined
# behaviour and data races; a filter that matched nothing would pass, hence the count.
miri_lanes() {
    local out="$LOG_DIR/miri-run.log"
    cargo +"$NIGHTLY" miri test -p buffstreams-transport-std --lib --locked writer::lane 2>&1 | tee "$out"
    local n; n=$(tests_in "$out")
    echo "miri: $n lane tests ran (at least $MIN_MIRI_TESTS required)"
    [[ $n -ge $MIN_MIRI_TESTS ]]
}

# The fuzz targets cargo-fuzz lists must be exactly the binaries fuzz/Cargo.toml declares, and
# at least MIN_FUZZ_TARGETS of them: the fuzz loop below runs this list.
fuzz_targets() {
    local declared listed
    declared=$(sed -n '/^\[\[bin\]\]/,/^name/ s/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | sort)
    listed=$(cd fuzz && cargo +"$NIGHTLY" fuzz list | sort)
    echo "declared: $(echo $declared)"
    echo "listed:   $(echo $listed)"
    [[ "$declared" == "$listed" ]] || { echo "cargo fuzz list differs from fuzz/Cargo.toml"; return 1; }
    local n; n=$(grep -c . <<<"$listed")
    echo "$n fuzz targets (at least $MIN_FUZZ_TARGETS required)"
    [[ $n -ge $MIN_FUZZ_TARGETS ]]
    echo "$listed" >"$LOG_DIR/fuzz-targets.txt"
}

# Each interop peer ran at least one exchange in this run's tests (a skipped test leaves no
# record; CI's BUFFSTREAMS_NO_SKIP already turns a skip into a failure, this checks it did).
interop_peers() {
    local peer missing=0
    for peer in "${INTEROP_PEERS[@]}"; do
        if [[ -s "$INTEROP_RAN_DIR/$peer" ]]; then
            echo "$peer: $(wc -l <"$INTEROP_RAN_DIR/$peer") exchanges"
        else
            echo "$peer: did not run"
            missing=$((missing + 1))
        fi
    done
    [[ $missing == 0 ]]
}

llvm_tools() {
    dirname "$(find "$(rustc --print sysroot)" -name llvm-size -print -quit)"
}

firmware_size() {
    cd examples/firmware
    cargo build --release --locked --bin firmware
    local bin=target/thumbv7m-none-eabi/release/firmware tools
    tools=$(llvm_tools)
    "$tools/llvm-size" -A "$bin" | awk '$1 ~ /^\.(vector_table|text|rodata|data|bss)$/ { printf "%s %d B  ", $1, $2 } END { print "" }'
    # Symbols the linker kept out of line, by crate (LTO inlines most of our code into main).
    "$tools/llvm-nm" --size-sort -S -t d -C "$bin" | awk '
        $3 ~ /[tTrR]/ { if ($0 ~ /buffstreams_framing/) f += $2; else if ($0 ~ /buffstreams_transport_smoltcp/) t += $2;
                        else if ($0 ~ /__cortex_m_rt_main/) m += $2; else if ($0 ~ /smoltcp::/) s += $2 }
        END { printf "firmware .text by symbol: framing %d B, transport-smoltcp %d B, main (app loop + inlined writer/decoder) %d B, smoltcp %d B\n", f, t, m, s }'
    # What the acknowledged mode costs: the `acked` image against its twin without the mode.
    local budget="${ACKED_CODE_BUDGET:-4096}" plain acked
    cargo build --release --locked --bin acked --features plain-twin
    plain=$("$tools/llvm-size" -A target/thumbv7m-none-eabi/release/acked | awk '$1 ~ /^\.(text|rodata)$/ { s += $2 } END { print s }')
    cargo build --release --locked --bin acked
    acked=$("$tools/llvm-size" -A target/thumbv7m-none-eabi/release/acked | awk '$1 ~ /^\.(text|rodata)$/ { s += $2 } END { print s }')
    echo "acknowledged mode: +$((acked - plain)) B of flash (.text + .rodata; the acked firmware against its plain twin, budget $budget B)"
    [[ $((acked - plain)) -le $budget ]]
}

nostd_check() {
    cd framing/nostd-check
    cargo build --release --locked
    # Runs the binary: it exits non-zero if a frame came out wrong.
    cargo run --release --locked
    # Negative control: the same binary with one `alloc` use must fail to link, for that reason.
    if cargo build --release --locked --features alloc-control >"$LOG_DIR/alloc-control.log" 2>&1; then
        echo "negative control linked: the check cannot detect an allocator"
        return 1
    fi
    grep -q "no global memory allocator" "$LOG_DIR/alloc-control.log"
    echo "the alloc control failed to link: no global memory allocator"
}

text_size() {
    local budget="${TEXT_BUDGET:-2048}" tools
    cd framing/nostd-check
    cargo build --release --locked --target thumbv7em-none-eabihf
    local bin=target/thumbv7em-none-eabihf/release/buffstreams-nostd-check
    tools=$(llvm_tools)
    "$tools/llvm-size" -A "$bin"
    "$tools/llvm-nm" --size-sort -S -t d "$bin" | awk -v budget="$budget" '
        $3 ~ /[tT]/ { if ($4 ~ /mem(cpy|set|clr|cmp|move)|memclr|compiler_builtins/) rt += $2; else app += $2 }
        END { printf "thumbv7em .text: framing (decoder+encoder+check harness) %d B, compiler-builtins mem* %d B\n", app, rt
              if (app > budget) { printf "over the %d B budget\n", budget; exit 1 } }'
}

# --self-test: a planted failure in each kind of step must turn that step into FAIL. Each case
# runs a real step function the way `step` does (a subshell with errexit, not a condition),
# after SETUP has planted the failure: `shadow CMD STATUS PATTERN` puts a function in front of
# CMD that returns STATUS, printing nothing else, when CMD's arguments contain PATTERN. A case
# is caught when the function fails and its log matches EXPECT (the planted failure's own mark).
shadow() { # CMD STATUS PATTERN
    eval "$1() {
        if [[ \" \$* \" == *\"$3\"* ]]; then
            echo \"planted failure: $1 \$*\" >&2
            return $2
        fi
        command $1 \"\$@\"
    }"
}

planted() { # NAME FN EXPECT SETUP
    local name="$1" fn="$2" expect="$3" setup="$4"
    local log="$LOG_DIR/self-test-$name.log"
    (
        set -eo pipefail
        eval "$setup"
        "$fn"
    ) >"$log" 2>&1
    local result=$?
    if [[ $result != 0 ]] && grep -q -- "$expect" "$log"; then
        echo "self-test: $name: caught ($fn failed with status $result: $expect)"
    else
        echo "self-test: $name: NOT caught ($fn exited with $result; see $log)"
        missed=$((missed + 1))
    fi
}

loom_model() {
    bash transport-std/loom.sh
}

# A test whose tool is missing must fail under BUFFSTREAMS_NO_SKIP, not skip: the firmware
# test binary with no qemu-system-arm on its PATH.
no_skip() {
    local bin
    bin=$(cargo test -p buffstreams-examples --test firmware --locked --no-run --message-format=json 2>/dev/null |
        grep '"kind":\["test"\]' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    [[ -x "$bin" ]] || { echo "no firmware test binary"; return 1; }
    PATH="$NO_SKIP_PATH" BUFFSTREAMS_NO_SKIP=1 "$bin" --test-threads 1
}

self_test() {
    # The cases run as plain statements: inside a condition (`planted .. || ..`) bash would
    # ignore their errexit too, which is the very hole this tests.
    set +e
    local missed=0 empty
    empty=$(mktemp -d)
    # install: apt-get fails (every package reported missing), and a rustup line in the middle.
    planted install-apt install "planted failure: apt-get" 'dpkg() { return 1; }; shadow apt-get 100 update'
    planted install-rustup install "planted failure: rustup" 'shadow rustup 1 "target add"'
    # build, run and the reason check of the no-alloc link check.
    planted nostd-build nostd_check "planted failure: cargo build" 'shadow cargo 101 "build --release --locked "'
    planted nostd-run nostd_check "planted failure: cargo run" 'shadow cargo 101 "run --release"'
    planted nostd-reason nostd_check "planted failure: grep" 'shadow grep 1 "no global memory allocator"'
    # size checks: a failed build with the binary of an earlier build left over, a budget
    # overrun, and the firmware's build.
    planted size-build text_size "planted failure: cargo build" 'shadow cargo 101 "--target thumbv7em-none-eabihf"'
    planted size-budget text_size "over the 16 B budget" 'export TEXT_BUDGET=16'
    planted firmware-build firmware_size "planted failure: cargo build" 'shadow cargo 101 "--bin firmware"'
    planted acked-budget firmware_size "budget 16 B" 'export ACKED_CODE_BUDGET=16'
    # counts: a Miri filter that ran nothing, an empty fuzz list, an interop peer that never ran.
    planted miri-empty miri_lanes "miri: 0 lane tests ran" 'shadow cargo 0 "miri test"'
    planted fuzz-list-empty fuzz_targets "cargo fuzz list differs" 'shadow cargo 0 "fuzz list"'
    planted interop-skipped interop_peers "go: did not run" "export INTEROP_RAN_DIR=$empty"
    # fail instead of skip: a test with its emulator missing, under BUFFSTREAMS_NO_SKIP.
    planted missing-qemu no_skip "BUFFSTREAMS_NO_SKIP is set: qemu-system-arm is not installed" "export NO_SKIP_PATH=$empty"
    # loom: a mutant that breaks the build is not a caught mutant.
    planted loom-broken-build loom_model "broke the build" 'export LOOM_PLANT=build'
    rmdir "$empty"
    echo "self-test: $missed planted failures not caught"
    [[ $missed == 0 ]]
}

if [[ $SELF_TEST_ONLY == 1 ]]; then
    step ci-self-test self_test
    grep -h "^self-test:" "$LOG_DIR/ci-self-test.log" | sed 's/^/      /'
    [[ $failed == 0 ]]
    exit
fi

echo "== install"
step install install
if [[ $failed != 0 ]]; then
    echo "0 passed, 1 failed"
    exit 1
fi

# Tests that need root, a network namespace or QEMU fail instead of skipping in CI.
[[ -n "${CI:-}" ]] && export BUFFSTREAMS_NO_SKIP=1
if [[ -n "${BUFFSTREAMS_NO_SKIP:-}" && $(id -u) != 0 ]]; then
    echo "BUFFSTREAMS_NO_SKIP is set but this is not root: the TAP, network-namespace and QEMU tests would fail; run as root, or unset CI and BUFFSTREAMS_NO_SKIP to let them skip"
    exit 1
fi

SMOLTCP=buffstreams-transport-smoltcp
echo "== static checks"
step fmt bash -c 'cargo fmt --all --check && (cd fuzz && cargo fmt --check) && (cd framing/nostd-check && cargo fmt --check) && (cd examples/firmware && cargo fmt --check)'
# transport-smoltcp's `log` and `defmt` features exclude each other: one clippy run each.
# The interop peers in Go and Python: formatted and vetted as their languages expect.
step peers-lint bash -c 'test -z "$(gofmt -l examples/peers)" && (cd examples/peers && go vet peer.go) && /usr/bin/python3 -c "import ast; ast.parse(open('"'"'examples/peers/peer.py'"'"').read())"'
# No source file imports one that imports it back (by a `use` or an inline path).
step import-cycles python3 .ci/import-cycles.py framing/src transport-std/src transport-smoltcp/src
step clippy cargo clippy --workspace --exclude "$SMOLTCP" --all-targets --all-features --locked -- -D warnings
# transport-std without its `tls` feature (the workspace build turns it on for the examples).
step clippy-std-no-tls cargo clippy -p buffstreams-transport-std --all-targets --locked -- -D warnings
step clippy-smoltcp-log cargo clippy -p "$SMOLTCP" --all-targets --features log,proto-ipv6,medium-ip --locked -- -D warnings
step clippy-smoltcp-defmt cargo clippy -p "$SMOLTCP" --target thumbv7em-none-eabihf --features defmt --locked -- -D warnings
step clippy-firmware bash -c 'cd examples/firmware && cargo clippy --release --all-targets --locked -- -D warnings'
# The TLS image compiles its certificates in: placeholders are enough for clippy (the test that
# runs it makes real ones).
step clippy-firmware-tls bash -c 'pki=$(mktemp -d) && head -c 400 /dev/urandom >"$pki/ca.der" && head -c 400 /dev/urandom >"$pki/device.der" && head -c 32 /dev/urandom >"$pki/device.key" && cd examples/firmware && BUFFSTREAMS_FIRMWARE_PKI="$pki" cargo clippy --release --all-targets --features tls --locked -- -D warnings'
# The published crates build with the oldest Rust they declare, and package as crates.io
# would take them (each verified from its tarball, the workspace siblings from a local registry).
step "msrv-$MSRV" bash -c 'cargo +"$MSRV" check --locked -p buffstreams-framing -p buffstreams-transport-std --all-features && cargo +"$MSRV" check --locked -p '"$SMOLTCP"' --features log,proto-ipv6,medium-ip'
# cargo package verifies each crate against its siblings' fresh tarballs, served from a local
# registry. cargo takes registry crates for immutable: an extraction left in
# $CARGO_HOME/registry/src/-<hash>/ by an earlier run from the same checkout path, and a build
# of it left in the target directory, are both reused as they are, so a crate would be
# verified against its sibling's old source. Both go first; the verification builds in a
# target directory of its own.
package() {
    rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/buffstreams-* target/package target/package-verify
    cargo package --workspace --exclude buffstreams-examples --exclude buffstreams-embassy-example --exclude buffstreams-test-support --locked --allow-dirty --target-dir target/package-verify
}
step package package
step rustdoc bash -c 'export RUSTDOCFLAGS="-D warnings"; cargo doc --workspace --exclude '"$SMOLTCP"' --no-deps --all-features --locked && cargo doc -p '"$SMOLTCP"' --no-deps --features log --locked'
# Each published crate's docs as docs.rs builds them (its metadata's features and targets,
# nightly, --cfg docsrs), rustdoc warnings denied.
step docs-rs python3 .ci/docsrs.py
# What the READMEs claim about the repository: the landing page's length, links that
# resolve (absolute ones in the crate READMEs), every fuzz target and program named.
step readme-check python3 .ci/readme-check.py
# The README's Getting started as a newcomer types it: its dependency lines in a crate of
# its own, outside the workspace, running the README's first example.
step getting-started python3 .ci/getting-started.py

echo "== tests"
rm -rf target/tmp/firmware-figures.txt target/tmp/embassy-firmware-figures.txt target/tmp/acked-firmware-figures.txt target/tmp/tls-firmware-figures.txt "$INTEROP_RAN_DIR"
# --no-fail-fast: every test binary runs, so a failure's count is complete.
step tests cargo test --workspace --locked --no-fail-fast
count_tests "$LOG_DIR/tests.log"
step interop-peers interop_peers
sed 's/^/      /' "$LOG_DIR/interop-peers.log"
# The decoder must not panic or wrap on a 32-bit usize either (8-byte headers, huge lengths).
step tests-32bit cargo test -p buffstreams-framing --target i686-unknown-linux-gnu --locked --no-fail-fast --lib --test split --test oracle
count_tests "$LOG_DIR/tests-32bit.log"
# The transport's non-Linux paths (a fence per message instead of membarrier, a peek instead of
# poll) must at least compile cleanly.
step clippy-macos cargo clippy -p buffstreams-transport-std --target x86_64-apple-darwin --locked -- -D warnings

echo "== models with their mutations: the writer's lanes (loom, Miri), the acknowledged machines"
# The model checks the real lane code (src/writer/lane/loom.rs); loom.sh then weakens one
# ordering or drops one fence at a time and requires the model to fail on each.
step loom loom_model
grep -h "^loom:" "$LOG_DIR/loom.log" 2>/dev/null | sed 's/^/      /'
# The acknowledged mode's machines with planted bugs: the property test must catch each, and
# the crash tests the ones the README names (framing/acked-mutants.sh).
step acked-mutants bash framing/acked-mutants.sh
grep -h "^mutants:" "$LOG_DIR/acked-mutants.log" 2>/dev/null | sed 's/^/      /'
step miri miri_lanes
count_tests "$LOG_DIR/miri.log"
grep -h "^miri:" "$LOG_DIR/miri.log" 2>/dev/null | sed 's/^/      /'

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
sed 's/^/      /' target/tmp/firmware-figures.txt target/tmp/embassy-firmware-figures.txt target/tmp/acked-firmware-figures.txt target/tmp/tls-firmware-figures.txt 2>/dev/null || true
step firmware-size firmware_size
grep -hE "^\.vector|^firmware .text|^acknowledged mode" "$LOG_DIR/firmware-size.log" 2>/dev/null | sed 's/^/      /' || true
step no-alloc-link-check nostd_check
step thumbv7em-text-size text_size
grep -h "thumbv7em .text" "$LOG_DIR/thumbv7em-text-size.log" 2>/dev/null | sed 's/^/      /'

echo "== this script's own teeth"
step ci-self-test self_test
grep -h "^self-test:" "$LOG_DIR/ci-self-test.log" | sed 's/^/      /'

if [[ -d fuzz ]]; then
    echo "== fuzz"
    step fuzz-check bash -c 'cd fuzz && cargo check --locked --bins'
    step fuzz-targets fuzz_targets
    sed 's/^/      /' "$LOG_DIR/fuzz-targets.log"
    if [[ $QUICK == 0 ]]; then
        # The flags `fuzz run` uses (release, with debug assertions and overflow checks), so the
        # runs below reuse this build instead of making their own.
        step fuzz-build bash -c 'cd fuzz && cargo +"$NIGHTLY" fuzz build'
        for target in $(cat "$LOG_DIR/fuzz-targets.txt" 2>/dev/null); do
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
