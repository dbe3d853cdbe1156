"""Summarise a ``py-spy record -f raw`` profile: the functions with the largest share of samples.

    py-spy record --gil -r 50 -f raw -o live.raw -- python -m pytest --env=<lab> -n 0 --no-html
    python bench/pyspy_summary.py live.raw            # inclusive and self shares, top 60

``--gil`` keeps only the samples of the thread holding the GIL: where the process's Python time goes. Paths are
shortened to the package (``allure_commons/logger.py``, ``pytest_vpro/gating.py``).
"""
from __future__ import annotations

import argparse
import collections
import re

FRAME = re.compile(r"(.*?) \((.*?):\d+\)")


def summarise(path: str, top: int = 60) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            total += n
            names = []
            for frame in stack.split(";"):
                m = FRAME.match(frame)
                names.append(f"{m.group(1)} ({m.group(2).split('site-packages/')[-1].split('/main/')[-1]})"
                             if m else frame)
            for name in set(names):
                inclusive[name] += n
            own[names[-1]] += n
    out = [f"{total} samples", "", "inclusive:"]
    out += [f"{v / total * 100:5.1f}% {k}" for k, v in inclusive.most_common(top)]
    out += ["", "self:"] + [f"{v / total * 100:5.1f}% {k}" for k, v in own.most_common(top // 2)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("raw")
    p.add_argument("--top", type=int, default=60)
    a = p.parse_args()
    print(summarise(a.raw, a.top), end="")
