"""A dv-processing ``NetworkWriter`` in its own process: the "other host" of the dv source tests.

Run as ``python dv_writer_proc.py PORT WIDTH HEIGHT NAME``. It listens on 127.0.0.1:PORT,
prints ``ready``, then obeys one command per line on stdin, answering ``ok`` (or an error):

* ``wait``: until a client is connected (at most 10 s);
* ``write PATH``: send the ``EVENT_DTYPE`` events of the .npy file at PATH as one batch.

End of stdin, or being killed, drops the connection the way a host that goes away does.
A separate process because destroying a ``NetworkWriter`` while a reader in the same
process is connected deadlocks (its I/O thread waits for the GIL the destructor holds).
"""

from __future__ import annotations

import os
import sys
import time

import dv_processing as dv
import numpy as np


def main() -> None:
    port, width, height, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    stream = dv.io.Stream.EventStream(0, "events", name, (width, height))
    writer = dv.io.NetworkWriter("127.0.0.1", port, stream)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "wait":
            deadline = time.monotonic() + 10
            while writer.getClientCount() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            print("ok" if writer.getClientCount() else "no client", flush=True)
        elif cmd == "write":
            store = dv.EventStore()
            # Test helper, a few hundred events: a Python loop is fine here.
            for t, x, y, p in np.load(arg).tolist():
                store.push_back(t, x, y, p)
            writer.writeEvents(store)
            print("ok", flush=True)
        else:
            print(f"unknown command {cmd!r}", flush=True)
    # Leave without running the writer's destructor: an abrupt end, like a host that goes away.
    os._exit(0)


if __name__ == "__main__":
    main()
