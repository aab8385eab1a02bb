#!/usr/bin/env python3
"""Builds each published crate's documentation the way docs.rs does.

For every workspace package that can be published, with the nightly toolchain named by
$NIGHTLY: `cargo rustdoc --lib` with its `[package.metadata.docs.rs]` features
(`features`, `all-features`, `no-default-features`), for its default target and every one of
its `targets`, with `--cfg docsrs` and the metadata's `rustdoc-args`, DOCS_RS=1 set, and
rustdoc's warnings denied (a broken intra-doc link fails). Targets without a prebuilt
standard library on that nightly get `-Zbuild-std=core` (docs.rs installs them; we may not
be able to). Exits non-zero at the first failure, naming the command.
"""
import json
import os
import subprocess
import sys

nightly = os.environ.get("NIGHTLY", "nightly")
meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--no-deps", "--format-version", "1", "--locked"]))
installed = subprocess.check_output(
    ["rustup", "+" + nightly, "target", "list", "--installed"], text=True).split()

built = 0
for pkg in meta["packages"]:
    if pkg.get("publish") == [] or not any("lib" in t["kind"] for t in pkg["targets"]):
        continue
    docs = ((pkg.get("metadata") or {}).get("docs") or {}).get("rs") or {}
    targets = docs.get("targets")
    default = docs.get("default-target") or (targets[0] if targets else "x86_64-unknown-linux-gnu")
    all_targets = [default] + [t for t in (targets or []) if t != default]
    args = ["cargo", "+" + nightly, "rustdoc", "--lib", "--locked", "-p", pkg["name"]]
    if docs.get("features"):
        args += ["--features", " ".join(docs["features"])]
    if docs.get("all-features"):
        args.append("--all-features")
    if docs.get("no-default-features"):
        args.append("--no-default-features")
    flags = ["--cfg", "docsrs", "-Z", "unstable-options", "-D", "warnings"] + docs.get("rustdoc-args", [])
    args += ["--config", "build.rustdocflags=" + json.dumps(flags)]
    for target in all_targets:
        cmd = args + ["--target", target, "--target-dir", "target/docsrs"]
        if target not in installed:
            cmd.append("-Zbuild-std=core")
        print("docs.rs build:", " ".join(cmd), flush=True)
        env = dict(os.environ, DOCS_RS="1")
        env.pop("RUSTDOCFLAGS", None)
        if subprocess.call(cmd, env=env) != 0:
            sys.exit(f"docs.rs-style build failed: {pkg['name']} for {target}")
        built += 1
print(f"docs.rs-style builds: {built} (crate, target) pairs")
if built < 4:
    sys.exit("expected at least 4 docs.rs builds (framing, transport-std, transport-smoltcp x2)")
