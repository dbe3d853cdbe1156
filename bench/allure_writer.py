"""CPU per Allure result: allure's ``AllureFileLogger`` against pytest-vpro's ``BufferedAllureWriter``.

    python bench/allure_writer.py [COUNT]      # default 20,000 results and as many containers

Both write the same files (tests/plugin/test_allure_writer.py) into a fresh folder: one result (with the labels
pytest-vpro sets, a parameter and an attachment link) and one container per test, as allure-pytest reports them.
Printed per test: the test loop's wall time and its own thread's CPU (what the tests wait for), and everything
including the buffered writer's last flush at the session's end (wall, and the process's CPU, every thread).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from allure_commons.logger import AllureFileLogger
from allure_commons.model2 import Attachment, Label, Parameter, Status, TestResult, TestResultContainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pytest_vpro.report.allure_writer import BufferedAllureWriter


def items(count: int):
    for i in range(count):
        u = str(uuid.uuid4())
        r = TestResult(uuid=u, name=f"test_client[pc{i:05}.corp.test]", fullName="suites.stage2.test_wsman#test_client",
                       historyId=uuid.uuid4().hex, testCaseId=uuid.uuid4().hex, status=Status.PASSED,
                       start=1700000000000 + i, stop=1700000000001 + i, stage="finished")
        r.labels = [Label("epic", "Stage 2"), Label("feature", "WS-MAN"), Label("story", "T2-WSMAN-TLS"),
                    Label("severity", "critical"), Label("tag", "tls"), Label("host", "vm"),
                    Label("thread", "1234-MainThread"), Label("framework", "pytest"), Label("language", "cpython3"),
                    Label("package", "suites.stage2.test_wsman"), Label("suite", "test_wsman")]
        r.parameters = [Parameter(name="target", value=f"pc{i:05}.corp.test")]
        r.attachments = [Attachment(name="evidence", source=f"{uuid.uuid4()}-attachment.txt", type="text/plain")]
        c = TestResultContainer(uuid=str(uuid.uuid4()), name="target", children=[u], start=r.start, stop=r.stop)
        yield r, c


def run(make, count: int) -> dict[str, float]:
    data = list(items(count))
    with tempfile.TemporaryDirectory(prefix="allure-bench-") as tmp:
        logger = make(Path(tmp))
        if hasattr(logger, "start"):
            logger.start()
        start, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        for r, c in data:
            logger.report_result(r)
            logger.report_container(c)
        loop = {"loop": time.perf_counter() - start, "main": time.thread_time() - main}
        if hasattr(logger, "stop"):
            logger.stop()  # the last batch, written at the session's end
        return loop | {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    stock, buffered = [], []
    for _ in range(3):
        stock.append(run(lambda d: AllureFileLogger(d), count))
        buffered.append(run(lambda d: BufferedAllureWriter(d), count))
    print(f"{count:,} tests (a result and a container each), median of 3, ms per test: the test loop's wall time "
          "and its thread's CPU; all of it (with the last flush) in wall and process CPU")
    for name, runs in (("AllureFileLogger", stock), ("BufferedAllureWriter", buffered)):
        med = {k: statistics.median(r[k] for r in runs) / count * 1e3 for k in runs[0]}
        print(f"  {name:<22} loop {med['loop']:.3f}  main-thread CPU {med['main']:.3f}  "
              f"all: wall {med['wall']:.3f}  CPU {med['cpu']:.3f}")


if __name__ == "__main__":
    main()
