"""Run matrix-js-sdk scenarios (``tests/js/*.mjs``) against a server started by a test.

A scenario is an ES module under ``tests/js`` that takes the homeserver base URL as its first
argument and prints one JSON line, ``{"ok": true, "result": ...}`` or ``{"ok": false, "error":
...}`` (see ``tests/js/lib/harness.mjs``). :func:`run_js` runs it with Node under a Trio timeout
without blocking the event loop the in-process server is serving from, and returns ``result``.

``scripts/bootstrap test`` installs ``tests/js/node_modules`` with ``npm ci`` from the lock file.
Tests using this module are skipped only when ``node`` is not installed at all (and
``scripts/test`` refuses to run in CI without it); a missing ``node_modules`` is a failure that
says how to install it, never a skip.

For a long-running scenario (a /sync loop, say) that must be driven from the test while it
runs, :func:`start_js` gives the process and reads its JSON lines as they come.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")

#: Mark a test (or module) that needs Node: skipped, with the reason, only when node is absent.
requires_node = pytest.mark.skipif(
    NODE is None,
    reason="node is not installed: the matrix-js-sdk tests need Node.js 20 (scripts/test "
    "requires it when CI=true)",
)


class JsScenarioFailed(AssertionError):
    """The scenario exited non-zero or printed no result line; the message has its output."""


def _check_installed() -> str:
    if NODE is None:
        pytest.skip("node is not installed")
    if not (JS_DIR / "node_modules" / "matrix-js-sdk" / "package.json").is_file():
        pytest.fail(
            "tests/js/node_modules is missing: run `scripts/bootstrap test` "
            "(or `npm ci --no-audit --no-fund` in tests/js)",
            pytrace=False,
        )
    return NODE


def _script(name: str) -> str:
    path = JS_DIR / (name if name.endswith(".mjs") else f"{name}.mjs")
    if not path.is_file():
        raise FileNotFoundError(path)
    return str(path)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("JS_SDK_LOG_LEVEL", "warn")
    # No proxy between Node's fetch and the test server on loopback.
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    env.update(extra or {})
    return env


def _result_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and "ok" in value:
                return value
    return None


async def run_js(
    script: str,
    base_url: str,
    *args: str,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> Any:
    """Run ``tests/js/<script>.mjs <base_url> <args...>`` and return its ``result``.

    Raises:
        JsScenarioFailed: the scenario failed (its error, stdout and stderr are in the message).
        trio.TooSlowError: it ran longer than ``timeout`` seconds (the process is killed).
    """
    node = _check_installed()
    with trio.fail_after(timeout):
        proc = await trio.run_process(
            [node, _script(script), base_url, *args],
            cwd=JS_DIR,
            env=_env(env),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=b"",
        )
    stdout = proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace")
    outcome = _result_line(stdout)
    if proc.returncode != 0 or outcome is None or not outcome.get("ok"):
        error = outcome.get("error") if outcome else None
        raise JsScenarioFailed(
            f"{script} exited {proc.returncode}; error: {json.dumps(error, indent=1)}\n"
            f"--- stdout\n{stdout[-4000:]}\n--- stderr\n{stderr[-4000:]}"
        )
    return outcome["result"]


@dataclass
class JsProcess:
    """A scenario that is still running: read its JSON lines with :meth:`next_message`."""

    process: trio.Process
    _buffer: bytearray = field(default_factory=bytearray)

    async def next_message(self, timeout: float = 30.0) -> Any:
        """The next JSON line the scenario printed (``{"ok": ...}`` lines included)."""
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise JsScenarioFailed(
                        f"scenario ended (exit {self.process.poll()}) before printing a line"
                    )
                self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return json.loads(line)

    async def send(self, message: Any) -> None:
        """Write one JSON line to the scenario's stdin (for scenarios that wait on input)."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(message).encode() + b"\n")


@asynccontextmanager
async def start_js(
    script: str, base_url: str, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[JsProcess]:
    """Start a scenario and keep it running for the ``async with`` block; kill it at the end.

    Its stderr is inherited (pytest shows it on failure). Use it for scenarios that print
    several lines, e.g. one per /sync response, while the test acts on the server.
    """
    node = _check_installed()
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                [node, _script(script), base_url, *args],
                cwd=JS_DIR,
                env=_env(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
            )
        )
        try:
            yield JsProcess(process)
        finally:
            process.kill()
