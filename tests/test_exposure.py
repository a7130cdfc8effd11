"""Exposure: the servers our commands start listen on 127.0.0.1 only, read from the kernel's own table of
listening sockets (``/proc/net/tcp`` and ``tcp6``), not from the command line we passed."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from urllib.parse import urlparse

import pytest

LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """The local addresses that listen on TCP ``port`` (IPv4 dotted, IPv6 compressed)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] != LISTEN or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host byte order.
            words = struct.unpack(f"<{len(raw) // 4}I", raw)
            found.add(socket.inet_ntop(family, struct.pack(f">{len(words)}I", *words)))
    return found


def test_the_table_reads_a_socket_we_bind():
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as server:
            server.bind((host, 0))
            server.listen()
            assert listening_addresses(server.getsockname()[1]) == {host}


@pytest.mark.lm
def test_the_bundled_lm_server_listens_on_loopback_only(local_lm):
    assert listening_addresses(urlparse(local_lm.base_url).port) == {"127.0.0.1"}
