#!/usr/bin/env python3
"""rust-version.py < cargo-metadata.json: each workspace member's declared rust-version is at
least that of every crate it compiles (normal and build dependencies, transitively). Prints
the figures; exits 1 if a member declares less than a dependency needs."""
import json
import sys


def key(v):
    parts = [int(x) for x in (v or "0").split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.load(sys.stdin)
pkgs = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
bad = 0
for ws in meta["workspace_members"]:
    seen, stack = set(), [ws]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        for d in nodes[i]["deps"]:
            if any(k["kind"] != "dev" for k in d["dep_kinds"]):
                stack.append(d["pkg"])
    top = max(seen, key=lambda i: key(pkgs[i]["rust_version"]))
    declared = pkgs[ws]["rust_version"]
    ok = key(declared) >= key(pkgs[top]["rust_version"])
    bad += not ok
    print(f'rust-version {pkgs[ws]["name"]}: declared {declared}, needed {pkgs[top]["rust_version"]} '
          f'({pkgs[top]["name"]}){"" if ok else "  <- too low"}')
sys.exit(1 if bad else 0)
