"""Peak memory of one upload, measured in a process of its own.

`python -m bench.memory OWNER_ID CSV_PATH`, with the database URL in BULKIMPORT_BENCH_MEMORY_URL,
reads the file, stages it exactly as the upload view does (read + validate + stage + commit) and
prints one JSON line: the process's RSS after imports and reading the file (baseline), its peak
RSS at the end (VmHWM) and the time.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

MEMORY_URL_ENV = "BULKIMPORT_BENCH_MEMORY_URL"


def current_rss_mib() -> float:
    """The resident set size of this process now, in MiB (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_rss_mib() -> float:
    """The peak resident set size of this process so far, in MiB."""
    # Linux's VmHWM first: ru_maxrss survives execve, so a child started by subprocess reports
    # at least the RSS of the parent it was forked from (the bench process, hundreds of MiB).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str]) -> None:
    """Stage the file named in `argv` and print the memory figures as JSON."""
    url, owner_id, csv_path = os.environ[MEMORY_URL_ENV], int(argv[0]), Path(argv[1])
    from sqlalchemy import text

    from bulkimport.extensions import db
    from bulkimport.importing.staging import UploadOptions, stage_upload

    from .environment import make_app

    app = make_app(url)
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # connect, so the driver is loaded and counted
        db.session.commit()
        data = csv_path.read_bytes()  # the upload view holds the whole file too
        gc.collect()
        baseline_now, baseline_peak = current_rss_mib(), peak_rss_mib()
        started = time.perf_counter()
        batch = stage_upload(db.session, owner_id, csv_path.name, data,
                             UploadOptions(generate_passwords=True))
        counts = batch.counts
        db.session.commit()
        seconds = time.perf_counter() - started
        peak = peak_rss_mib()
    print(json.dumps({"baseline_rss_mib": baseline_now, "baseline_peak_mib": baseline_peak,
                      "peak_rss_mib": peak, "seconds": seconds, "rows": counts["total"],
                      "file_mib": len(data) / (1024 * 1024), "counts": counts}))


if __name__ == "__main__":
    main(sys.argv[1:])
