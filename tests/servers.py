"""Helpers for tests that start a JupyterLab server: a free port on 127.0.0.1, waiting until a
URL answers, stopping the whole process group, and which addresses a port listens on."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_served(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> bytes:
    """The body of ``url`` once it answers; a clear error if the server died or never answered."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                state = "exited" if server.poll() is not None else f"no answer in {timeout} s"
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"JupyterLab did not serve {url} ({state}); its log:\n"
                                   f"{tail}") from None
            time.sleep(0.3)


def stop(server: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True``: jupyter lab starts children,
    so the whole process group goes."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)


def listening_addresses(port: int) -> set[str]:
    """Addresses on which a TCP socket listens on ``port``, read from /proc/net (Linux)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(raw)))
    return found
