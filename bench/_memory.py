"""Private (anonymous) resident memory of the current process, and its peak sampled in a background thread.

Used by the bench workers: unlike the whole RSS, ``RssAnon`` does not count shared-library pages, whose
residency depends on the page cache rather than on the program.
"""

from __future__ import annotations

import threading
import time


def rss_anon_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class AnonymousMemoryPeak:
    """Peak of ``RssAnon`` (MiB) from construction until :meth:`stop`, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005) -> None:
        self.start_mib = self.peak_mib = rss_anon_mib()
        self.interval = interval
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            self.peak_mib = max(self.peak_mib, rss_anon_mib())
            time.sleep(self.interval)

    def stop(self) -> float:
        """Stop sampling and return the peak."""
        self.running = False
        self.thread.join()
        self.peak_mib = max(self.peak_mib, rss_anon_mib())
        return self.peak_mib
