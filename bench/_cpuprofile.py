"""Run ``python -m homeserver <args>`` under cProfile with the main thread's CPU clock.

cProfile's default clock is wall time, which on a busy 2-core machine charges the waiting for
the CPU to whatever call was running. This one counts only CPU time of the Trio thread (where
the SQLite units of work run too). The stats go to the file named by ``HS_PROFILE`` (``{pid}``
in it becomes the process ID, for benchmarks that start several servers) when the
server exits (SIGTERM stops it cleanly). Used by bench/_server.py.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import sys
import time

if __name__ == "__main__":
    profiler = cProfile.Profile(time.thread_time)
    sys.argv = ["homeserver", *sys.argv[1:]]
    profiler.enable()
    try:
        runpy.run_module("homeserver", run_name="__main__")
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(os.environ["HS_PROFILE"].replace("{pid}", str(os.getpid())))
