"""Benchmarks behind `make bench`: import speed, memory and invitation sending, each beside a raw
floor measured in the same run, against the targets of DESIGN.md "Performance targets" (and, for
invitations, at most twice the floor).

Run `python -m bench`; set BULKIMPORT_BENCH_DATABASE_URL to a PostgreSQL server to measure there
instead of on a temporary SQLite file. The mail stage needs Redis: BULKIMPORT_BENCH_REDIS_URL,
by default redis://127.0.0.1:6379/14, a database it flushes before and after (--skip-mail skips
it).
"""
