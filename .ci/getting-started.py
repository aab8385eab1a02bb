#!/usr/bin/env python3
"""The README's Getting started, as a newcomer would type it, in a crate of its own.

Takes the dependency lines of README.md's first toml block (the commented alternatives for
firmware and async too) and of framing/README.md's tokio block, points the git URL at this
checkout (a path dependency: CI has no network beyond the registries), and builds a new
crate outside the workspace whose main is README.md's first Rust example; then runs it.
"""
import re
import subprocess
import sys
from pathlib import Path

GIT = 'git = "https://github.com/buffstreams-rs/buffstreams-rs"'
root = Path.cwd()
crates = {"buffstreams-transport-std": "transport-std", "buffstreams-transport-smoltcp":
          "transport-smoltcp", "buffstreams-framing": "framing"}


def blocks(path, lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", Path(path).read_text(), flags=re.S)


def features(spec):
    m = re.search(r"features = \[(.*?)\]", spec)
    return re.findall(r'"([\w-]+)"', m.group(1)) if m else []


deps = {}
for path in ["README.md", "framing/README.md"]:
    for block in blocks(path, "toml"):
        for line in block.splitlines():
            line = re.sub(r"^#\s*\w+:\s*", "", line.strip())
            m = re.match(r"^([\w-]+)\s*=\s*(\{.*\}|\".*\")$", line)
            if not m:
                continue
            name, spec = m.groups()
            if GIT in spec:
                if name not in crates:
                    sys.exit(f"{path}: {name} is not a crate of this repository")
                spec = spec.replace(GIT, f'path = "{root / crates[name]}"')
            if name in deps:
                # The same crate in two READMEs (two feature sets): the union of features.
                feats = sorted(set(features(deps[name])) | set(features(spec)))
                spec = re.sub(r",?\s*features = \[.*?\]", "", spec).rstrip(" }")
                spec += ", features = [" + ", ".join(f'"{f}"' for f in feats) + "] }"
            deps[name] = spec
for name in crates:
    if name not in deps:
        sys.exit(f"the READMEs give no dependency line for {name}")

code = blocks("README.md", "rust")[0]
code = "\n".join(l[2:] if l.startswith("# ") else l for l in code.splitlines())
dir = root / "target/tmp/getting-started"
(dir / "src").mkdir(parents=True, exist_ok=True)
(dir / "Cargo.toml").write_text(
    '[package]\nname = "getting-started"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n'
    "[workspace]\n\n[dependencies]\n" + "".join(f"{n} = {s}\n" for n, s in deps.items()))
(dir / "src/main.rs").write_text(
    "fn main() {\n    let run = || {\n" + code + "\n    };\n    run().expect(\"the README's example\");\n"
    '    println!("getting started: the README\'s example ran");\n}\n')
print((dir / "Cargo.toml").read_text())
lock = root / "Cargo.lock"
(dir / "Cargo.lock").write_bytes(lock.read_bytes())
sys.exit(subprocess.call(["cargo", "run", "--quiet", "--target-dir", str(root / "target/getting-started")], cwd=dir))
