#!/usr/bin/env python3
"""Checks the room layering of src/ (see the map in src/lib.rs): every `crate::<room>` a room
names, outside its unit tests, must be of a lower rank, so there can be no import cycle.
Prints each room's uses; exits 1 naming every use that points up or sideways."""
import os
import re
import sys

# Lower numbers sit lower; a room may use only rooms of a strictly lower rank.
RANK = {
    "wire": 0, "clock": 0, "role": 0, "images": 0, "log_gate": 0,
    "crypto": 1, "search": 1, "config": 1, "metrics": 1,
    "store": 2, "hub": 2, "can": 2,
    "profile_rules": 3,
    "session": 4, "neighborhood": 4,
    "catalog": 5,
    "context": 6,
    "handlers": 7,
    "jobs": 8, "net": 8,
    "peers": 9,
    "runtime": 10, "probe": 10,
}
# Lower rooms a room must not use although its rank would allow it: the sides of the map that
# meet only through a room below both (src/lib.rs).
SKIPS = {
    "peers": {"handlers", "jobs"},
    "jobs": {"handlers", "net"},
    "net": {"jobs"},
}
USE = re.compile(r"crate::([a-z_]+)")
TESTS = re.compile(r"#\[cfg\(test\)\]\s*mod tests")


def room_of(path):
    first = os.path.relpath(path, "src").split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def main():
    uses = {}
    for folder, _, files in os.walk("src"):
        for name in files:
            if not name.endswith(".rs") or name == "tests.rs":
                continue
            path = os.path.join(folder, name)
            room = room_of(path)
            if room in ("lib", "main"):
                continue
            with open(path, encoding="utf-8") as source:
                code = TESTS.split(source.read())[0]
            for used in USE.findall(code):
                if used != room:
                    uses.setdefault(room, {}).setdefault(used, path)
    wrong = []
    for room in sorted(uses):
        print(f"{room:9} -> {', '.join(sorted(uses[room]))}")
        if room not in RANK:
            wrong.append(f"{room}: not in the rank table of .ci/layers.py")
            continue
        for used, path in sorted(uses[room].items()):
            if RANK.get(used, 99) >= RANK[room]:
                wrong.append(f"{path}: {room} (rank {RANK[room]}) uses {used} "
                             f"(rank {RANK.get(used, '?')})")
            elif used in SKIPS.get(room, ()):
                wrong.append(f"{path}: {room} uses {used}, which the map keeps apart "
                             f"(SKIPS in .ci/layers.py)")
    for line in wrong:
        print("error:", line)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
