from __future__ import annotations

import os
import sys
import threading

import pytest

from pixtill.utils.thread_priority import BACKGROUND_NICE, lower_thread_priority


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_only_the_calling_thread_is_lowered() -> None:
    seen: dict[str, int] = {}

    def background() -> None:
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["applied"] = lower_thread_priority()
        after = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["delta"] = after - before

    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen["applied"] is True
    assert seen["delta"] == min(BACKGROUND_NICE, 19 - main_before)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before
