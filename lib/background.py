"""CPU priority of the app's background work.

MONAI Label runs scoring, training and batch-inference requests in their own processes
(``python -m monailabel.interfaces.utils.app -m scoring|train|batch_infer``), each of which
builds the app anew. On a 2-core server such a
process competes with the annotators' prompts: the scoring pass that starts with the server
made a first prompt take 15 s instead of about 2 s. The app lowers such a
process's priority once, as it is built (before any model is loaded), so the server's
inference comes first; in any other process (the server, tests, the
CLI) nothing changes.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)

TASK_MODULE = "monailabel.interfaces.utils.app"
_lowered = False


def in_task_process() -> bool:
    """Whether this process is one of MONAI Label's task processes."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == TASK_MODULE


def yield_cpu(increment: int) -> bool:
    """In a MONAI Label task process, raise this process's niceness by ``increment`` (once per
    process; 0: off). Returns whether it was lowered by this call."""
    global _lowered
    if increment <= 0 or _lowered or not in_task_process():
        return False
    niceness = os.nice(increment)
    _lowered = True
    logger.info("background task: CPU niceness raised by %d to %d", increment, niceness)
    return True
