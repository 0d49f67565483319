#!/usr/bin/env python3
"""Boots the arm64 image from image.sh under qemu-system-aarch64 (TCG) and runs the package
checks of .ci/vm-test: each step in the guest through guest.sh on the serial console, or on the
host against the forwarded ports. Prints one line per step with its time; exits 1 on the first
failing step, after printing the end of the console log."""

import argparse
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

MARKER = re.compile(rb"@@(\d+)@@(\d+)@@")
# Terminal control sequences the shell still writes (bracketed paste and the like).
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROMPT = b"root@iop-vm"


class Failure(Exception):
    pass


class Console:
    """The guest's serial console: a root shell the driver types commands into."""

    def __init__(self, process, log):
        self.process = process
        self.log = log
        self.chunks = queue.Queue()
        self.buffer = b""
        self.count = 0
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while True:
            chunk = self.process.stdout.read1(65536)
            if not chunk:
                self.chunks.put(None)
                return
            self.log.write(chunk)
            self.log.flush()
            self.chunks.put(chunk)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Failure("timed out waiting for the guest")
        try:
            chunk = self.chunks.get(timeout=remaining)
        except queue.Empty:
            raise Failure("timed out waiting for the guest") from None
        if chunk is None:
            raise Failure("the VM exited")
        self.buffer += chunk

    def wait_for(self, needle, seconds):
        deadline = time.monotonic() + seconds
        while needle not in self.buffer:
            self._fill(deadline)
        self.buffer = self.buffer[self.buffer.index(needle) + len(needle):]

    def type(self, line):
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def run(self, command, seconds=120):
        """Runs a shell command in the guest; returns (exit code, output)."""
        self.count += 1
        n = self.count
        # The marker's number is computed by the guest, so an echo of the line cannot match it.
        self.type(f"{command}; printf '\\n@@%d@@%d@@\\n' $(({n} + 0)) $?")
        deadline = time.monotonic() + seconds
        while True:
            match = MARKER.search(self.buffer)
            if match and int(match.group(1)) == n:
                output = self.buffer[: match.start()].decode(errors="replace")
                self.buffer = self.buffer[match.end():]
                output = ESCAPES.sub("", output.replace("\r", ""))
                return int(match.group(2)), output.strip()
            self._fill(deadline)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def data_disk(directory, files):
    """A small ext4 disk with the packages and guest.sh, mounted read-only in the guest."""
    content = os.path.join(directory, "content")
    os.mkdir(content)
    for name, path in files.items():
        shutil.copy(path, os.path.join(content, name))
    size = sum(os.path.getsize(path) for path in files.values()) // (1 << 20) + 32
    image = os.path.join(directory, "data.img")
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", content, image, f"{size}M"], check=True)
    return image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", required=True, help="directory image.sh filled")
    parser.add_argument("--deb", required=True, help="the arm64 package")
    parser.add_argument("--upgrade-deb", required=True, help="the same with a higher version")
    parser.add_argument("--host-bin", required=True, help="iop-profile-server for this host")
    parser.add_argument("--flood", required=True, help="host command of the flood step")
    parser.add_argument("--log", required=True, help="where the serial console goes")
    args = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    work = tempfile.mkdtemp(prefix="iop-vm-")
    disk = data_disk(work, {
        "first.deb": args.deb,
        "second.deb": args.upgrade_deb,
        "guest.sh": os.path.join(here, "guest.sh"),
    })
    primary, tls = free_port(), free_port()
    image = args.image
    # virtio-mmio disks are found in reverse order: the root disk, given last, is /dev/vda.
    command = [
        "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
        "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
        "-kernel", f"{image}/vmlinuz", "-initrd", f"{image}/initrd.img",
        "-append", "console=ttyAMA0 quiet loglevel=3 panic=-1",
        "-drive", f"if=none,id=data,file={disk},format=raw,readonly=on",
        "-device", "virtio-blk-device,drive=data",
        "-drive", f"if=none,id=root,file={image}/root.img,format=raw,snapshot=on",
        "-device", "virtio-blk-device,drive=root",
        # Nothing leaves the VM but the two forwarded ports.
        "-netdev", f"user,id=net,restrict=on,hostfwd=tcp:127.0.0.1:{primary}-:{primary},"
        f"hostfwd=tcp:127.0.0.1:{tls}-:{tls}",
        "-device", "virtio-net-device,netdev=net",
    ]
    log = open(args.log, "wb")
    vm = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    console = Console(vm, log)
    report = []
    started = time.monotonic()

    def step(name, action):
        begun = time.monotonic()
        try:
            detail = action()
        except Failure as failure:
            report.append((name, time.monotonic() - begun, f"FAILED: {failure}"))
            raise
        report.append((name, time.monotonic() - begun, detail or ""))
        print(f"  {time.monotonic() - begun:6.1f} s  {name}: {detail or 'ok'}", flush=True)

    def guest(*words, seconds=180):
        rc, output = console.run("sh /mnt/guest.sh " + " ".join(words), seconds)
        if rc != 0:
            raise Failure(output[-2000:])
        return output.splitlines()[-1] if output else ""

    def host(command, seconds, env=None):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds,
                                  env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired:
            raise Failure(f"{command[0]} did not finish in {seconds} s") from None
        if done.returncode != 0:
            raise Failure((done.stdout + done.stderr)[-3000:])
        return done.stdout

    def boot():
        console.wait_for(PROMPT, 240)
        console.type("stty -echo; export TERM=dumb PS1='' SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat;"
                     " bind 'set enable-bracketed-paste off' 2>/dev/null")
        rc, output = console.run("mount -o ro /dev/vdb /mnt && uname -r", 60)
        if rc != 0:
            raise Failure(output)
        return f"kernel {output.splitlines()[-1]}, systemd as PID 1"

    def probe():
        out = host([args.host_bin, "probe", f"127.0.0.1:{primary}"], 120)
        return " / ".join(line.strip() for line in out.strip().splitlines()[1:])

    state = {}

    def network_id():
        state["id"] = guest("network-id")
        if not re.fullmatch(r"[0-9a-f]{64}", state["id"]):
            raise Failure(f"no network id in status: {state['id']!r}")
        return state["id"][:16] + "…"

    def watchdog_period():
        # WatchdogSec=30s: one period and a margin after the start, the watchdog was fed.
        rc, output = console.run(
            "sleep $((40 - $(date +%s) + $(date -d \"$(systemctl show -p "
            "ExecMainStartTimestamp --value iop-profile-server)\" +%s))) 2>/dev/null; true", 60)
        return guest("restarts", "0")

    def flood():
        out = host(args.flood.split(), 600, {"IOP_VM_PRIMARY_PORT": str(primary),
                                              "IOP_VM_TLS_PORT": str(tls)})
        lines = [line for line in out.splitlines() if line.startswith("flood:")]
        return lines[-1] if lines else "done"

    try:
        step("boot", boot)
        step("dpkg -i, Pi 3 profile, systemctl enable --now",
             lambda: guest("install", "/mnt/first.deb", str(primary), str(tls)))
        step("probe from the host through the forwarded ports", probe)
        step("systemd's view: state, StatusText, watchdog, dynamic uid, memory.max",
             lambda: guest("service"))
        step("status through the runtime socket (root, group member, outsider)",
             lambda: guest("status"))
        step("writes outside the state directory fail in the sandbox", lambda: guest("sandbox"))
        step("network id", network_id)
        step("a watchdog period later: no restart", watchdog_period)
        step("kill -9: systemd restarts it with the same identity",
             lambda: guest("kill9", state["id"]))
        step("upgrade to a higher version", lambda: guest("upgrade", "/mnt/second.deb",
                                                          state["id"]))
        step("Pi Zero 2 W profile", lambda: guest("flood-board", "pi-zero-2w", str(primary),
                                                  str(tls)))
        step("flood from the host", flood)
        step("after the flood: no OOM kill, no restart", lambda: guest("memory"))
        step("probe again", probe)
        step("apt remove keeps the data, dpkg --purge removes it", lambda: guest("remove"))
    except Failure:
        print("--- end of the serial console:")
        with open(args.log, "rb") as handle:
            sys.stdout.write(handle.read()[-4000:].decode(errors="replace"))
        print()
        return 1
    finally:
        vm.kill()
        vm.wait()
        shutil.rmtree(work, ignore_errors=True)
        total = time.monotonic() - started
        print(f"VM test: {len(report)} steps in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
