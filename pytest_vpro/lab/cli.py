"""``vpro-lab up|status|down``: the embedded lab, in the background, for people to poke at.

The options are taken before or after the command (``vpro-lab up --state DIR`` and ``vpro-lab --state DIR up``).
The default description is ``environments/lab.yaml`` of the current folder where there is one (a clone), else
the one that ships in the package.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import environment as envmod
from . import estate, manager


def default_description() -> Path:
    local = Path("environments/lab.yaml")
    return local if local.is_file() else envmod.SHIPPED_ENVIRONMENTS / "lab.yaml"


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--description", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                        help="the lab description (default: environments/lab.yaml here, else the one installed "
                             "with pytest-vpro)")
    common.add_argument("--state", type=Path, default=argparse.SUPPRESS, metavar="DIR",
                        help="the lab's folder (default: state_dir in the description)")
    top = argparse.ArgumentParser(prog="vpro-lab", parents=[common],
                                  description="Run the pytest-vpro lab (a Samba domain, DHCP, a PKI, simulated AMT "
                                              "PCs and site server on this machine) in the background.")
    sub = top.add_subparsers(dest="command", required=True, metavar="{up,status,down}")
    up = sub.add_parser("up", parents=[common], help="build and start a lab; returns when it is ready")
    up.add_argument("--clients", type=int, metavar="N", help="number of simulated AMT clients")
    up.add_argument("--latency-ms", type=float, metavar="MS", help="latency of every simulated WS-MAN call")
    sub.add_parser("status", parents=[common], help="is a lab running, and where")
    sub.add_parser("down", parents=[common], help="stop the lab; leaves no process and no listener behind")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    description = getattr(args, "description", None) or default_description()
    try:
        _, default_state = estate.load_description(description)
    except (OSError, estate.DescriptionError) as exc:
        print(f"vpro-lab: {exc}", file=sys.stderr)
        return 2
    state = (getattr(args, "state", None) or default_state).resolve()
    try:
        if args.command == "up":
            info = manager.up(description, state=state, clients=args.clients, latency_ms=args.latency_ms,
                              log=lambda line: print(f"vpro-lab: {line}", flush=True))
            print(f"vpro-lab: state file {state / 'lab.json'} (mode 0600: it holds the lab's credentials)")
            print("vpro-lab: check it with: pytest --env lab (it reuses this lab), "
                  f"or pytest --env={info['environment_file']}")
        elif args.command == "status":
            info = manager.status(state)
            if info is None:
                print(f"vpro-lab: no lab running in {state}")
                return 1
            summary = {k: info[k] for k in ("pid", "domain", "environment_file")}
            summary.update(clients=len(info["clients"]), dc=info["dc"]["address"],
                           site_server=info["site_server"]["address"])
            print(json.dumps(summary, indent=1))
        else:
            print("vpro-lab: stopped" if manager.down(state) else f"vpro-lab: no lab running in {state}")
    except manager.LabError as exc:
        print(f"vpro-lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
