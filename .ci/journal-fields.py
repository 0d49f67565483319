#!/usr/bin/env python3
"""Checks that span fields reach the systemd journal, with a stand-in for journald.

Usage: journal-fields.py SERVER_BINARY

tracing-journald writes to the fixed path /run/systemd/journal/socket, so this binds a datagram
socket there (only when no journald owns it), starts the server with JOURNAL_STREAM set, opens
one connection, and expects the connection's events to carry SPAN_NAME=conn, F_PEER and F_PORT.
Exits 0 on success, 1 on failure, and prints "skipped" when a real journald is running.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

JOURNAL_DIR = "/run/systemd/journal"
JOURNAL_SOCKET = JOURNAL_DIR + "/socket"


def parse(datagram):
    """Decodes journald's native protocol: KEY=value lines, or KEY, LE64 length, bytes."""
    fields, pos = {}, 0
    while pos < len(datagram):
        end = datagram.index(b"\n", pos)
        line = datagram[pos:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = end + 1
        else:
            key = line
            (length,) = struct.unpack("<Q", datagram[end + 1 : end + 9])
            value = datagram[end + 9 : end + 9 + length]
            pos = end + 9 + length + 1
        fields.setdefault(key.decode(), []).append(value.decode(errors="replace"))
    return fields


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    binary = sys.argv[1]
    if os.path.exists(JOURNAL_SOCKET):
        print("journal fields: skipped, a journald owns " + JOURNAL_SOCKET)
        return 0
    made_dir = not os.path.isdir(JOURNAL_DIR)
    os.makedirs(JOURNAL_DIR, exist_ok=True)
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(JOURNAL_SOCKET)
    journal.settimeout(0.2)
    try:
        return run(binary, journal)
    finally:
        journal.close()
        os.unlink(JOURNAL_SOCKET)
        if made_dir:
            os.rmdir(JOURNAL_DIR)


def run(binary, journal):
    port = free_port()
    with tempfile.TemporaryDirectory() as work:
        config = os.path.join(work, "config.toml")
        with open(config, "w") as f:
            f.write(
                f'data_dir = "{work}/data"\ntest_mode = true\nbind_address = "127.0.0.1"\n'
                f'[[listener]]\nport = {port}\nroles = ["primary"]\n'
            )
        env = dict(os.environ, JOURNAL_STREAM="0:0", RUST_LOG="debug")
        server = subprocess.Popen([binary, "run", "--config", config], env=env)
        events = []
        try:
            deadline = time.time() + 20
            while time.time() < deadline and not any(e.get("MESSAGE") == ["serving"] for e in events):
                receive(journal, events)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                # A header announcing a 4 GiB frame: logged as a framing violation, then closed.
                client.sendall(b"\x0d\xff\xff\xff\xff")
                try:
                    client.recv(64)
                except OSError:
                    pass
            deadline = time.time() + 5
            while time.time() < deadline and not any("SPAN_NAME" in e for e in events):
                receive(journal, events)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    in_span = [e for e in events if e.get("SPAN_NAME") == ["conn"]]
    if not in_span:
        print(f"journal fields: FAILED, no event inside the conn span among {len(events)}")
        return 1
    event = in_span[0]
    missing = [k for k in ("F_PEER", "F_PORT", "MESSAGE", "PRIORITY") if k not in event]
    if missing or event["F_PORT"] != [str(port)]:
        print(f"journal fields: FAILED, missing {missing} in {event}")
        return 1
    print(f"journal fields: ok, {event['MESSAGE'][0]!r} carries F_PEER={event['F_PEER'][0]}"
          f" F_PORT={event['F_PORT'][0]} from its span")
    return 0


def receive(journal, events):
    try:
        datagram = journal.recv(1 << 16)
    except socket.timeout:
        return
    if datagram:
        events.append(parse(datagram))


if __name__ == "__main__":
    sys.exit(main())
