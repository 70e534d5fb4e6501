"""The workbook figures: reading an N-row `.xlsx` (read_workbook) beside its raw floor and beside
reading the same rows as CSV (read_table), and the peak memory of reading a 100,000-row workbook.

`python -m bench.workbook` prints them alone, without a database or Redis (about a minute);
`python -m bench` prints them among its own rows. `python -m bench.workbook --memory-child PATH`
is the fresh process in which the memory figure is taken, as bench.memory does for CSV uploads.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .environment import DATA, PROJECT
from .generate import make_csv, make_xlsx

READ_RATIO_TARGET = 3.0  # the ratio the other stages are held to
MEMORY_TARGET_MIB = 300.0  # the issue: a workbook stays within the CSV path's memory target
XLSX_BASE = 40_000_000  # person numbers of the memory file: no database, so any range would do


@dataclass
class WorkbookResult:
    """Best-of-N seconds of reading the N-row workbook, its floor and the CSV of the same rows,
    the file sizes, and the memory child's figures (None when skipped)."""

    rows: int
    xlsx_mib: float
    csv_mib: float
    ours: float = float("inf")
    floor: float = float("inf")
    csv: float = float("inf")
    memory: dict | None = None

    @property
    def ratio(self) -> float:
        """read_workbook divided by openpyxl's bare iteration."""
        return self.ours / self.floor

    def table_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """Rows for bench's table: (stage, ours, raw floor, ratio, target, result)."""
        rows = [
            (f"xlsx read: {self.rows:,} rows (read_workbook)", f"{self.ours:.3f} s",
             f"{self.floor:.3f} s", f"{self.ratio:.2f}", f"ratio ≤ {READ_RATIO_TARGET:g}",
             _verdict(self.ratio <= READ_RATIO_TARGET)),
            (f"  beside CSV read: the same {self.rows:,} rows (read_table)", f"{self.csv:.3f} s",
             "", f"{self.ours / self.csv:.1f}× CSV", "", ""),
        ]
        if self.memory:
            rows.append((f"peak memory: {self.memory['rows']:,}-row xlsx read",
                         f"{self.memory['peak_rss_mib']:.0f} MiB",
                         f"{self.memory['baseline_rss_mib']:.0f} MiB base", "",
                         f"≤ {MEMORY_TARGET_MIB:g} MiB",
                         _verdict(self.memory["peak_rss_mib"] <= MEMORY_TARGET_MIB)))
        return rows

    def summary(self) -> str:
        """The paragraph printed under the table: what each figure covers."""
        text = (f"xlsx read: read_workbook of a {self.xlsx_mib:.1f} MiB workbook (text in shared "
                "strings, as Excel saves it) into rows of strings; floor = openpyxl load_workbook("
                "read_only=True, data_only=True) + iter_rows(values_only=True), no conversion; "
                f"the CSV figure is read_table of the same rows as a {self.csv_mib:.1f} MiB CSV. "
                "Neither includes validation or staging.")
        if self.memory:
            base, peak = self.memory["baseline_rss_mib"], self.memory["peak_rss_mib"]
            text += (f" xlsx peak memory: process RSS {base:.0f} MiB after imports and reading "
                     f"the {self.memory['file_mib']:.1f} MiB file; peak {peak:.0f} MiB "
                     f"(VmHWM), so +{peak - base:.0f} MiB for read_workbook alone, which "
                     f"took {self.memory['seconds']:.1f} s.")
        return text


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def raw_xlsx_floor(data: bytes) -> int:
    """The floor of reading a workbook: openpyxl streaming every row's values, nothing else;
    returns the number of rows."""
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    count = sum(1 for _ in book.worksheets[0].iter_rows(values_only=True))
    book.close()
    return count


def bench_workbook(rows: int, memory_rows: int | None, repeat: int, *,
                   users: int = 100_000) -> WorkbookResult:
    """Time read_workbook, its floor and read_table on `rows` rows (the review stage's file, as
    `.xlsx` and as CSV), best of `repeat`; then, unless `memory_rows` is None, the peak memory of
    reading a workbook of that many rows in a process of its own."""
    from bulkimport.importing.reader import read_table
    from bulkimport.importing.workbook import read_workbook

    options = {"start": 5_000_000, "existing_every": 10, "existing_start": users // 2,
               "changed_every": 2}  # the file of bench's review stage
    xlsx, csv = make_xlsx(rows, **options), make_csv(rows, **options)
    result = WorkbookResult(rows, len(xlsx) / 2**20, len(csv) / 2**20)
    for _ in range(repeat):
        for name, read in (("floor", raw_xlsx_floor), ("ours", read_workbook),
                           ("csv", read_table)):
            data = csv if name == "csv" else xlsx
            gc.collect()
            started = time.perf_counter()
            read(data)
            setattr(result, name, min(getattr(result, name), time.perf_counter() - started))
    if memory_rows:
        result.memory = bench_workbook_memory(memory_rows)
    return result


def bench_workbook_memory(rows: int) -> dict:
    """Write a `rows`-row workbook and read it in a fresh process; returns that process's
    figures."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"upload-{rows}.xlsx"
    path.write_bytes(make_xlsx(rows, start=XLSX_BASE))
    completed = subprocess.run(
        [sys.executable, "-m", "bench.workbook", "--memory-child", str(path)],
        cwd=PROJECT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"bench.workbook --memory-child failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def memory_child(path: Path) -> None:
    """Read the workbook at `path` with read_workbook and print the memory figures as JSON."""
    from bulkimport.importing.workbook import read_workbook

    from .memory import current_rss_mib, peak_rss_mib

    data = path.read_bytes()  # the upload view holds the whole file too
    gc.collect()
    baseline_now, baseline_peak = current_rss_mib(), peak_rss_mib()
    started = time.perf_counter()
    book = read_workbook(data)
    seconds = time.perf_counter() - started
    print(json.dumps({"baseline_rss_mib": baseline_now, "baseline_peak_mib": baseline_peak,
                      "peak_rss_mib": peak_rss_mib(), "after_rss_mib": current_rss_mib(),
                      "seconds": seconds, "rows": len(book.rows) - 1,
                      "file_mib": len(data) / 2**20}))


def main(argv: list[str] | None = None) -> int:
    """Print the workbook figures alone (or, with --memory-child, be the memory process)."""
    parser = argparse.ArgumentParser(prog="python -m bench.workbook", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the timed workbook")
    parser.add_argument("--memory-rows", type=int, default=100_000,
                        help="rows of the workbook whose peak memory is measured")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best is kept)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory figure")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return 0
    result = bench_workbook(args.rows, None if args.skip_memory else args.memory_rows,
                            args.repeat)
    rows = result.table_rows()
    header = ("stage", "ours", "raw floor", "ratio", "target", "result")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"Workbook figures (best of {args.repeat})")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print()
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
