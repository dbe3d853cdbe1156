"""The lifecycle every asyncio lab server shares: serve from a background thread, or in the caller's loop.

A subclass implements ``start_async`` (which must set ``self.loop`` to the running loop and
``self._stop_event`` to an ``asyncio.Event``) and ``stop_async``; it gets ``start()``/``stop()`` (a
thread with its own event loop, start failures re-raised in the caller), ``serve_forever()`` (for a
process's own loop), ``request_stop()``, ``call_soon()`` and use as a context manager.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from typing import Any, Callable


class BackgroundService:
    thread_name = "lab-service"
    start_timeout = 60.0
    loop: asyncio.AbstractEventLoop | None = None
    _stop_event: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    async def start_async(self) -> None:
        raise NotImplementedError

    async def stop_async(self) -> None:
        raise NotImplementedError

    async def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Start, call ``on_ready``, serve until :meth:`request_stop`, then stop."""
        await self.start_async()
        assert self._stop_event is not None
        if on_ready is not None:
            on_ready()
        try:
            await self._stop_event.wait()
        finally:
            await self.stop_async()

    def start(self, timeout: float | None = None):
        """Serve from a background thread with its own event loop; returns once serving."""
        ready, failure = threading.Event(), []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # noqa: BLE001 - reported to the caller, after releasing what was bound
                failure.append(exc)
                ready.set()
                loop.run_until_complete(self.stop_async())
                loop.close()
                return
            ready.set()
            try:
                assert self._stop_event is not None
                loop.run_until_complete(self._stop_event.wait())
                loop.run_until_complete(self.stop_async())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
        self._thread.start()
        limit = timeout if timeout is not None else self.start_timeout
        if not ready.wait(limit):
            raise TimeoutError(f"{self!r} did not start within {limit} s")
        if failure:
            self._thread.join(5)
            raise failure[0]
        return self

    def request_stop(self) -> None:
        """Ask the serving loop to stop (call from inside the loop)."""
        if self._stop_event is not None:
            self._stop_event.set()

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in the service's loop (thread-safe), e.g. to change a simulated device's state."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        if self.loop is not None and self._stop_event is not None and self._thread is not None:
            self.loop.call_soon_threadsafe(self._stop_event.set)
            self._thread.join(30)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_as_process(service: BackgroundService, ready_line: Callable[[], str]) -> int:
    """Process mode (``python -m pytest_vpro.lab.<server> ...``): serve in this process's loop, print
    ``ready_line()`` once serving (the lab and the tests wait for it), stop cleanly on SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def ready() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.request_stop)
        print(ready_line(), flush=True)

    asyncio.run(service.serve_forever(on_ready=ready))
    return 0
