"""allure-pytest's results, written in batches instead of two files per test on the test loop.

allure-pytest registers an ``AllureFileLogger`` with allure's own plugin manager (``allure_commons.plugin_manager``)
in its ``pytest_configure``. That logger writes each result, container and attachment as it is reported: a
``.tmp`` file, a ``json.dump`` into it, a rename. ``json.dump`` to a file runs the pure-Python encoder (only
``json.dumps`` without indent uses the C one). The two files per test cost 0.4 to 0.8 ms, most of it creating the
files, on the thread that runs the tests (docs/scale.md, "Allure's files").

:class:`BufferedAllureWriter` takes the file logger's place with allure's plugin manager. It keeps allure's model
and labels untouched (the same ``attr.asdict`` with the same filter, the same file names
``<uuid>-result.json``, ``<uuid>-container.json``, ``<uuid>-attachment.<ext>``, the same JSON text), but it
serialises with the C encoder and writes the files in batches:

* every :data:`FLUSH_EVERY` files or :data:`FLUSH_BYTES` bytes, whichever comes first, from a thread of its own
  (creating files is kernel time, outside the GIL); four batches behind, the test loop writes itself, so the
  memory stays bounded;
* at the end of the session (``pytest_sessionfinish``, tryfirst: before the run renders its reports from them);
* on interrupt (``pytest_keyboard_interrupt``: the first Ctrl-C or SIGTERM; pytest then still finishes the
  session, which flushes again what came after), so an interrupted run keeps every finished result;
* at the config's cleanup, for a session that never finished.

Each process has its own buffer (an xdist worker writes its own results). A file being written is a ``.tmp`` and
is renamed when complete, as allure's logger does, so a reader never sees half a result. A batch interrupted
half-way keeps its unwritten files for the next flush. A process killed outright (SIGKILL) loses the files not yet
written: fewer than four batches.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from allure_commons import hookimpl, plugin_manager
from allure_commons.logger import AllureFileLogger
from attr import asdict

#: flush after this many buffered files (results, containers, attachments)
FLUSH_EVERY = 1000
#: or after this many buffered bytes
FLUSH_BYTES = 32 * 2**20

PLUGIN_NAME = "vpro-allure-writer"


def _keep(_attribute, value) -> bool:  # allure_commons.logger.AllureFileLogger's filter for attr.asdict
    return bool(value) or value is False


class BufferedAllureWriter:
    """Writes what ``allure_commons.logger.AllureFileLogger`` writes, the same files, in batches."""

    def __init__(self, report_dir: str | os.PathLike, every: int = FLUSH_EVERY, max_bytes: int = FLUSH_BYTES) -> None:
        self.dir = Path(report_dir).absolute()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.every, self.max_bytes = every, max_bytes
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()  # one writer at a time: the thread's batch, or a flush
        self._count = threading.Lock()  # the buffer and its byte count, between the adder and the writer
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = False
        self.written = 0

    # ---------------------------------------------------------------- allure_commons hooks (as AllureFileLogger)
    def _item(self, item: Any) -> None:
        name = item.file_pattern.format(prefix=uuid.uuid4())
        data = asdict(item, filter=_keep)
        if os.environ.get("ALLURE_INDENT_OUTPUT"):
            text = json.dumps(data, indent=4, ensure_ascii=False)
        else:  # the C encoder: the same text json.dump writes with its Python encoder
            text = json.dumps(data, ensure_ascii=False)
        self._add(name, text.encode("utf8"))

    @hookimpl
    def report_result(self, result) -> None:
        self._item(result)

    @hookimpl
    def report_container(self, container) -> None:
        self._item(container)

    @hookimpl
    def report_globals(self, globals_item) -> None:
        self._item(globals_item)

    @hookimpl
    def report_attached_data(self, body, file_name) -> None:
        self._add(file_name, body.encode("utf-8") if isinstance(body, str) else bytes(body))

    @hookimpl
    def report_attached_file(self, source, file_name) -> None:  # the source may be temporary: copied now
        tmp = self.dir / f"{file_name}.tmp"
        shutil.copy2(source, tmp)
        os.replace(tmp, self.dir / file_name)

    # ---------------------------------------------------------------- buffering
    def _add(self, name: str, data: bytes) -> None:
        with self._count:
            self._pending.append((name, data))  # the writer pops from the other end
            self._bytes += len(data)
        if len(self._pending) >= self.every or self._bytes >= self.max_bytes:
            if self._thread is not None and len(self._pending) < 4 * self.every and self._bytes < 4 * self.max_bytes:
                self._wake.set()  # the writer thread writes the batch while the tests go on
            else:  # no thread, or it fell behind: write here, so the memory stays bounded
                self.flush()

    def start(self) -> None:
        """Write the batches in a thread: creating a file is a system call that releases the GIL, and it is the
        larger part of the cost (0.2 ms a file here, more when the machine is loaded; docs/scale.md)."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="vpro-allure-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            self.flush()

    def stop(self) -> None:
        """Stop the writer thread (after its batch) and write what is left, here."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop = True
            self._wake.set()
            thread.join(timeout=60)
        self.flush()

    def flush(self) -> int:
        """Write every buffered file; returns how many. When it returns, every file added before is written (it
        waits for a batch the writer thread is writing). Safe to call again after an interruption part-way."""
        count = 0
        folder = str(self.dir)
        with self._lock:
            while self._pending:
                name, data = self._pending[0]
                tmp = f"{folder}/{name}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                os.replace(tmp, f"{folder}/{name}")
                with self._count:
                    self._pending.popleft()  # only once written: an interrupted batch keeps the rest
                    self._bytes -= len(data)
                count += 1
            self.written += count
        return count

    @property
    def pending(self) -> int:
        return len(self._pending)


class Installer:
    """A pytest plugin: at session start, puts a :class:`BufferedAllureWriter` in place of allure-pytest's
    ``AllureFileLogger`` (registered by allure-pytest's ``pytest_configure``, after pytest-vpro's), and flushes it
    at the end of the session, on interrupt and at cleanup."""

    def __init__(self, config: pytest.Config, every: int = FLUSH_EVERY) -> None:
        self.config, self.every = config, every
        self.writer: BufferedAllureWriter | None = None
        self._original: AllureFileLogger | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.install()

    def install(self) -> BufferedAllureWriter | None:
        if self.writer is not None:
            return self.writer
        manager = plugin_manager
        original = next((p for p in manager.get_plugins() if type(p) is AllureFileLogger), None)
        report_dir = getattr(self.config.option, "allure_report_dir", None)
        if original is None or not report_dir:  # no --alluredir, or someone else's logger: nothing to replace
            return None
        writer = BufferedAllureWriter(os.path.abspath(report_dir), every=self.every)  # as allure-pytest made it
        writer.start()
        manager.unregister(original)
        manager.register(writer)
        self.writer, self._original = writer, original
        self.config.add_cleanup(self.uninstall)  # runs before allure-pytest's own cleanup (last in, first out)
        return writer

    def uninstall(self) -> None:
        """Flush, and give allure's plugin manager its file logger back: allure-pytest's cleanup unregisters it."""
        if self.writer is None:
            return
        try:
            self.writer.stop()
        finally:
            manager = plugin_manager
            if manager.is_registered(self.writer):
                manager.unregister(self.writer)
            if self._original is not None and not manager.is_registered(self._original):
                manager.register(self._original)
            self.writer = None

    @pytest.hookimpl(tryfirst=True)  # before the run's report is rendered from the results
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.writer is not None:
            self.writer.flush()

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo) -> None:
        if self.writer is not None:
            self.writer.flush()


def install(config: pytest.Config, every: int = FLUSH_EVERY) -> Installer:
    """Register the installer with pytest once (pytest-vpro's plugin calls it for a run; ``-p`` loads it too)."""
    existing = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if existing is not None:
        return existing
    installer = Installer(config, every)
    config.pluginmanager.register(installer, PLUGIN_NAME)
    return installer


def pytest_configure(config: pytest.Config) -> None:
    """Loaded as a plugin of its own (``-p pytest_vpro.report.allure_writer``, e.g. by the benchmark's floor)."""
    install(config)
