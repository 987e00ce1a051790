"""What the fork server of job processes loads once (`jobs.runner`): Django, with every app's
job kinds, so that each job's process starts from it ready, in milliseconds."""

import os
import signal

import django

# A stop of the worker (SIGTERM, or ^C to its process group) is the worker's to act on: the
# server and the job processes forked from it ignore both, and the server, in a process group
# of its own, ends by itself when its worker does. Started from the worker's main thread it
# ignored them from the start (`runner.fork_server_start`); from here on in any case.
for _stop in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_stop, signal.SIG_IGN)
os.setpgid(0, 0)
django.setup()

from realtime.kernel import heap  # noqa: E402

from . import runner  # noqa: E402, F401 - the children's entry point

heap.freeze_loaded()  # before the forks: each job's process starts with it frozen
