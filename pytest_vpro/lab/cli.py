"""``vpro-lab up|status|down``: the embedded lab, in the background, for people to poke at."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import estate, manager


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vpro-lab", description="Run the pytest-vpro lab in the background.")
    parser.add_argument("--description", type=Path, default=Path("environments/lab.yaml"),
                        help="the lab description (default: environments/lab.yaml)")
    parser.add_argument("--state", type=Path, help="the lab's folder (default: state_dir in the description)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build and start a lab; returns when it is ready")
    up.add_argument("--clients", type=int, help="number of simulated AMT clients")
    up.add_argument("--latency-ms", type=float, help="latency of every simulated WS-MAN call")
    sub.add_parser("status", help="is a lab running, and where")
    sub.add_parser("down", help="stop the lab; leaves no process and no listener behind")
    args = parser.parse_args(argv)
    try:
        _, default_state = estate.load_description(args.description)
    except (OSError, estate.DescriptionError) as exc:
        print(f"vpro-lab: {exc}", file=sys.stderr)
        return 2
    state = (args.state or default_state).resolve()
    try:
        if args.command == "up":
            info = manager.up(args.description, state=state, clients=args.clients, latency_ms=args.latency_ms,
                              log=lambda line: print(f"vpro-lab: {line}", flush=True))
            print(f"vpro-lab: state file {state / 'lab.json'} (mode 0600: it holds the lab's credentials)")
            print(f"vpro-lab: check it with: pytest --env lab (it reuses this lab), or pytest --env={info['environment_file']}")
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
