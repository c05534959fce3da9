#!/usr/bin/env python3
"""prune-vendor.py VENDOR_DIR: empty the crates that no Linux target compiles.

`cargo vendor` copies every crate of Cargo.lock, Windows and wasm ones included (about 400 of
650 MB). Cargo must still read their manifests to load the lock file, but never compiles them
on Linux. Such a crate keeps its Cargo.toml, licence and notice files and its .rs file names
(emptied, so every declared target still exists); everything else goes, and its checksum file
lists no files (the package checksum from Cargo.lock stays). Which crates Linux needs comes from
`cargo metadata --filter-platform` for Debian's Linux architectures, every dependency kind.
"""
import json
import os
import subprocess
import sys

TRIPLES = [
    "x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "i686-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf", "arm-unknown-linux-gnueabi", "powerpc64le-unknown-linux-gnu",
    "s390x-unknown-linux-gnu", "riscv64gc-unknown-linux-gnu", "mips64el-unknown-linux-gnuabi64",
    "loongarch64-unknown-linux-gnu",
]
KEEP_PREFIXES = ("license", "licence", "copying", "notice", "copyright", "authors", "unlicense")


def needed(cargo):
    """Directory names (name-version) of the crates some Linux target compiles."""
    out = set()
    for triple in TRIPLES:
        meta = json.loads(subprocess.check_output(
            [cargo, "metadata", "--locked", "--offline", "--format-version", "1",
             "--filter-platform", triple]))
        pkgs = {p["id"]: p for p in meta["packages"]}
        for node in meta["resolve"]["nodes"]:
            p = pkgs[node["id"]]
            if p["source"]:
                out.add(f'{p["name"]}-{p["version"]}')
    return out


def prune(crate_dir):
    for root, dirs, files in os.walk(crate_dir):
        for f in files:
            path = os.path.join(root, f)
            rel = os.path.relpath(path, crate_dir)
            low = f.lower()
            if rel in ("Cargo.toml", ".cargo-checksum.json") or (root == crate_dir and low.startswith(KEEP_PREFIXES)):
                continue
            if f.endswith(".rs"):
                open(path, "w").close()
            else:
                os.remove(path)
    ck = os.path.join(crate_dir, ".cargo-checksum.json")
    with open(ck) as fh:
        data = json.load(fh)
    with open(ck, "w") as fh:
        json.dump({"files": {}, "package": data.get("package")}, fh)


def main():
    vendor = sys.argv[1]
    keep = needed(os.environ.get("CARGO", "cargo"))
    pruned = 0
    for d in sorted(os.listdir(vendor)):
        if d not in keep:
            prune(os.path.join(vendor, d))
            pruned += 1
    # The marker debian/rules checks: vendor/ is ours and complete.
    with open(os.path.join(vendor, ".anon-daemons-vendor"), "w") as fh:
        fh.write(f"{len(os.listdir(vendor)) - 1} crates, {pruned} without Linux code (emptied)\n")
    print(f"vendor: {len(keep)} crates compiled on Linux, {pruned} emptied", file=sys.stderr)


if __name__ == "__main__":
    main()
