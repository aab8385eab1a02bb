#!/usr/bin/env python3
"""Fails if a source file imports a module of its crate that imports it back, directly or
through others: by a `use`, or by a path written inline (`super::socket::write(..)`).
Modules are files: `a/b.rs` and `a/b/mod.rs` are `a::b`. Usage: import-cycles.py SRC_DIR..."""
import re
import sys
from pathlib import Path


def module_of(src: Path, f: Path) -> tuple:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def imports(text: str, here: tuple, modules: set) -> set:
    """Modules of this crate that a file names (the longest known prefix of each path)."""
    text = re.sub(r"//[^\n]*", "", text)
    uses = re.findall(r"\buse\s+([^;]+);", text)
    paths = [p for stmt in uses for p in expand(re.sub(r"\s", "", stmt))]
    paths += re.findall(r"\b((?:crate|super)(?:::\w+)+)", re.sub(r"\buse\s+[^;]+;", "", text))
    out = set()
    for path in paths:
        segs = path.split("::")
        base = list(here)
        if segs[0] == "crate":
            base, segs = [], segs[1:]
        elif segs[0] == "super":
            while segs and segs[0] == "super":
                base, segs = base[:-1], segs[1:]
        elif segs[0] == "self":
            segs = segs[1:]
        else:
            continue  # another crate
        full = tuple(base + segs)
        for n in range(len(full), 0, -1):
            if full[:n] in modules and full[:n] != here:
                out.add(full[:n])
                break
    return out


def expand(stmt: str) -> list:
    """`a::{b, c::{d}}` -> [a::b, a::c::d]."""
    m = re.match(r"^(.*?)\{(.*)\}$", stmt)
    if not m:
        return [stmt]
    prefix, inner = m.group(1), m.group(2)
    depth, cur, items = 0, "", []
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    return [p for it in items if it for p in expand(prefix + it)]


def main() -> int:
    bad = 0
    for src in map(Path, sys.argv[1:]):
        files = {module_of(src, f): f for f in src.rglob("*.rs")}
        modules = set(files)
        graph = {m: imports(f.read_text(), m, modules) for m, f in files.items()}
        # A file that imports one of its own descendants which imports it back is a cycle too.
        for a in sorted(graph):
            seen, stack = set(), [(b, [a, b]) for b in graph[a]]
            while stack:
                node, path = stack.pop()
                if node == a:
                    print(f"{src}: import cycle: {' -> '.join('::'.join(p) or 'crate' for p in path)}")
                    bad += 1
                    break
                if node in seen:
                    continue
                seen.add(node)
                stack.extend((n, path + [n]) for n in graph.get(node, ()))
    print(f"import cycles: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
