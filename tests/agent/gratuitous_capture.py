"""Run inside the client namespace: count the gratuitous messages one MAC sends for two IPs.

Usage: gratuitous_capture.py IPV4 IPV6 MAC. Prints "ready" once listening, then, after the
expected 5 rounds plus 2 quiet seconds (or 15 s), a dict of counts.
"""

from __future__ import annotations

import socket
import sys
import time

ETH_P_ALL = 3
EXPECTED = {"request": 5, "reply": 5, "advert": 5}


def main() -> None:
    ip4 = socket.inet_aton(sys.argv[1])
    ip6 = socket.inet_pton(socket.AF_INET6, sys.argv[2])
    mac = bytes.fromhex(sys.argv[3].replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    sock.settimeout(0.2)
    print("ready", flush=True)
    counts = dict.fromkeys(EXPECTED, 0)
    deadline, quiet_until = time.monotonic() + 15, None
    while time.monotonic() < deadline:
        if quiet_until is None and counts == EXPECTED:
            quiet_until = time.monotonic() + 2  # then make sure nothing more comes
        if quiet_until is not None and time.monotonic() > quiet_until:
            break
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            continue
        if frame[6:12] != mac:
            continue
        is_arp = frame[12:14] == b"\x08\x06"
        is_advert = frame[12:14] == b"\x86\xdd" and frame[20] == 58 and frame[54] == 136
        if is_arp and frame[28:32] == ip4 == frame[38:42]:
            counts["request" if frame[21] == 1 else "reply"] += 1
        elif is_advert and frame[62:78] == ip6:
            counts["advert"] += 1
    print(counts, flush=True)


if __name__ == "__main__":
    main()
