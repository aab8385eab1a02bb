#!/usr/bin/env python3
"""What the READMEs claim about the repository, checked.

- The top README is a landing page: at most MAX_WORDS words.
- The crate READMEs (shown by docs.rs and crates.io, where relative links break) link only
  to absolute URLs.
- Every relative link in the other markdown files, and every link into this repository's
  GitHub tree, names a file that exists (and a heading that exists, for `#anchor`s into
  markdown).
- fuzz/README.md names every fuzz target; examples/README.md names every example program.
"""
import re
import sys
from pathlib import Path

MAX_WORDS = 1200
REPO = "https://github.com/buffstreams-rs/buffstreams-rs/blob/main/"
CRATE_READMES = ["framing/README.md", "transport-std/README.md", "transport-smoltcp/README.md"]
OTHER = ["README.md", "CONTRIBUTING.md", "CHANGELOG.md", "fuzz/README.md", "examples/README.md",
         *sorted(str(p) for p in Path("docs").glob("*.md"))]

failures = []
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(text):
    """The text outside fenced code blocks."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def slug(heading):
    """GitHub's anchor for a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", Path(path).read_text(), flags=re.M)}


def check_target(source, target):
    path, _, anchor = target.partition("#")
    if target.startswith(REPO):
        path = target[len(REPO):].partition("#")[0]
        file = Path(path)
    elif re.match(r"^[a-z]+:", target):
        return
    elif path == "":
        file = Path(source)
    else:
        file = (Path(source).parent / path)
    if not file.exists():
        failures.append(f"{source}: link to {target}: {file} does not exist")
        return
    if anchor and file.suffix == ".md" and anchor not in anchors(file):
        failures.append(f"{source}: link to {target}: no heading #{anchor} in {file}")


total_words = len(Path("README.md").read_text().split())
print(f"README.md: {total_words} words (at most {MAX_WORDS})")
if total_words > MAX_WORDS:
    failures.append(f"README.md has {total_words} words, more than {MAX_WORDS}")

for readme in CRATE_READMES:
    for target in LINK.findall(prose(Path(readme).read_text())):
        if not re.match(r"^https?://", target):
            failures.append(f"{readme}: relative link {target} breaks on docs.rs and crates.io")
        else:
            check_target(readme, target)

for doc in OTHER:
    if Path(doc).exists():
        for target in LINK.findall(prose(Path(doc).read_text())):
            check_target(doc, target)

fuzz_readme = Path("fuzz/README.md").read_text()
targets = re.findall(r'^name = "(.*)"', Path("fuzz/Cargo.toml").read_text().split("[[bin]]", 1)[1], flags=re.M)
for t in targets:
    if f"`{t}`" not in fuzz_readme:
        failures.append(f"fuzz/README.md does not name the fuzz target `{t}`")
print(f"fuzz targets named: {len(targets)}")

examples_readme = Path("examples/README.md").read_text()
bins = sorted(p.stem if p.is_file() else p.name for p in Path("examples/src/bin").iterdir())
for b in bins:
    if f"`{b}`" not in examples_readme:
        failures.append(f"examples/README.md does not name the program `{b}`")
print(f"example programs named: {len(bins)}")

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
