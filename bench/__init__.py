"""Benchmarks behind `make bench`: import speed and memory, each beside a raw floor measured in
the same run, against the targets of DESIGN.md "Performance targets".

Run `python -m bench`; set BULKIMPORT_BENCH_DATABASE_URL to a PostgreSQL server to measure there
instead of on a temporary SQLite file.
"""
