"""When a test is about to hit pytest-timeout, print where every asyncio task is waiting.

pytest-timeout's own traceback only shows the event loop idle in `select`; what hangs is a
task awaiting something that never comes. Shortly before the timeout a watchdog thread asks
the test's event loop (found on the main thread's stack) to print each task's await chain.
"""

from __future__ import annotations

import asyncio
import faulthandler
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

#: The report comes this long before pytest-timeout ends the test.
REPORT_BEFORE_TIMEOUT_S = 20.0


def _main_thread_loop() -> asyncio.AbstractEventLoop | None:
    frame: FrameType | None = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, asyncio.AbstractEventLoop):
            return candidate
        frame = frame.f_back
    return None


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """The lines of a suspended task's await chain, outermost first."""
    lines = [repr(task)]
    awaitable: Any = task.get_coro()
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        elif not hasattr(awaitable, "cr_await"):
            lines.append(f"  awaiting {awaitable!r}")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    return lines


def _print_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    print(f"\n--- hang report: {len(tasks)} asyncio tasks ---", file=sys.stderr)
    for task in tasks:
        print("\n".join(await_chain(task)), file=sys.stderr)
    print("--- end of hang report ---", file=sys.stderr, flush=True)


def _report() -> None:
    loop = _main_thread_loop()
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(_print_tasks, loop)
    else:  # blocked outside an event loop: the threads' stacks say where
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)


def _timeout_s(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    timeout_s = _timeout_s(item)
    watchdog = None
    if timeout_s > REPORT_BEFORE_TIMEOUT_S:
        watchdog = threading.Timer(timeout_s - REPORT_BEFORE_TIMEOUT_S, _report)
        watchdog.daemon = True
        watchdog.start()
    try:
        yield
    finally:
        if watchdog is not None:
            watchdog.cancel()
