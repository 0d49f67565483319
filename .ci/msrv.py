#!/usr/bin/env python3
"""Checks that the rust-version in Cargo.toml covers every locked dependency's rust-version and
that README.md names the same minimum. Exits 1 naming the mismatch."""
import json
import re
import subprocess
import sys


def version(text):
    return tuple(int(part) for part in text.split("."))


def main():
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True, capture_output=True, text=True).stdout)
    ours = next(p for p in metadata["packages"] if p["id"] in metadata["workspace_members"])
    others = [p for p in metadata["packages"] if p["id"] != ours["id"]]
    needed = max((p for p in others if p.get("rust_version")),
                 key=lambda p: version(p["rust_version"]))
    declared = ours.get("rust_version") or "0"
    print(f"rust-version {declared}; highest of the lock: {needed['rust_version']} "
          f"({needed['name']} {needed['version']})")
    wrong = []
    if version(declared) < version(needed["rust_version"]):
        wrong.append(f"Cargo.toml rust-version {declared} is below {needed['name']}'s "
                     f"{needed['rust_version']}")
    with open("README.md", encoding="utf-8") as readme:
        stated = re.search(r"Rust toolchain \((\d+\.\d+(?:\.\d+)?) or newer\)", readme.read())
    if not stated or version(stated.group(1)) != version(declared):
        wrong.append(f"README.md must say 'Rust toolchain ({declared} or newer)'")
    for line in wrong:
        print("error:", line)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
