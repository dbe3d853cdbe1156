"""What a vantage point costs per port: testinfra's Addr module probing a loopback port from ``local://``, as
``facts/vantage.py`` does for a server with ``testinfra:`` (one command per port, under ``timeout``).

    python bench/vantage.py [--probes 50]

Prints the wall time per probe; docs/scale.md ("Vantage points cost a process per port") quotes it.
"""
from __future__ import annotations

import argparse
import platform
import socket
import time

import testinfra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=50)
    args = parser.parse_args()
    with socket.socket() as closed:  # a port nothing listens on: bound, not listening (refused at once)
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        addr = testinfra.get_host("local://").addr("127.0.0.1")
        start = time.perf_counter()
        for _ in range(args.probes):
            addr.port(port).is_reachable
        wall = time.perf_counter() - start
    print(f"{args.probes} probes from local:// in {wall:.2f} s: {wall / args.probes * 1000:.1f} ms per port "
          f"({platform.node()}, {platform.python_version()})")


if __name__ == "__main__":
    main()
