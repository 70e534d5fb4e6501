"""Time and peak memory of rendering hostile notification templates, each in a process of its own
with a timeout (a bomb that the sandbox does not stop would otherwise freeze this one too).

`python -m bench.template_bombs` prints one line per bomb: what the render did (rendered, or the
refusal), its wall time from a cold cache, and the peak of memory it allocated (tracemalloc, in a
second run). `--timeout` sets the limit of each child process (10 s by default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime
from itertools import pairwise


def _doubled(variable: str, prefix: str, times: int) -> str:
    """Template source setting {prefix}1 … {prefix}{times}, each twice the one before."""
    names = [variable] + [f"{prefix}{i}" for i in range(1, times + 1)]
    return "".join(f"{{% set {new} = {old} ~ {old} %}}" for old, new in pairwise(names))


POWER_TOWER = "{% if (((9**64)**64)**64)**64 > 1 %}x{% endif %}"
# name → (template source, firstname of the user it is rendered for)
BOMBS: dict[str, tuple[str, str]] = {
    "to-bytes-90MB": ('{{ (0).to_bytes(90000000,"big")|length }}', "Jane"),
    "power-tower": (POWER_TOWER, "Jane"),
    "power-tower-for-mallory": ("{% if firstname == 'Mallory' %}" + POWER_TOWER + "{% endif %}",
                                "Mallory"),
    "source-840KB": ("{{ firstname }} " * 52_500, "Jane"),
    "strip-long-chars": (_doubled("surname", "s", 8) + _doubled("firstname", "f", 8)
                         + "{{ f8.strip(s8 ~ firstname[0])|length }}", "\U0001F600" * 254),
    "set-block-static-text": ("{% set big %}{% for a in firstname[:30] %}"
                              "{% for b in firstname[:30] %}" + "\U0001F600" * 45_000
                              + "{% endfor %}{% endfor %}{% endset %}{{ big|length }}",
                              "Jane" * 60),
    "round-precision": ("{{ 5|round(-10000000) > 1 }}", "Jane"),
    "long-concat": (_doubled("firstname", "v", 8) + "{{ (" + " ~ ".join(["v8"] * 400)
                    + ")|length }}", "\U0001F600" * 254),
    "list-as-text": (_doubled("firstname", "v", 8) + "{{ [" + ", ".join(["v8"] * 400)
                     + "]|upper|length }}", "\U0001F600" * 254),
    "slices-in-a-list": ("{% set v0 = firstname ~ firstname[:136] %}" + _doubled("v0", "v", 8)
                         + "{% set kept = [" + ", ".join(f"v8[{i}:]" for i in range(150))
                         + "] %}{{ kept|length }}", "\U0001F600" * 254),
    "default-template-hostile-254": ("", "\U0001F600" * 254),
}


def measure(name: str) -> dict:
    """Render bomb `name` here twice, from a cold cache: once timed, once under tracemalloc for
    the peak of memory allocated; return what happened and the figures."""
    from bulkimport.mailing import templating

    source, firstname = BOMBS[name]
    template = (templating.NotificationTemplate(subject=source, html="", text="") if source
                else templating.DEFAULT_INVITATION)
    context = templating.invitation_context(
        username="u" * 254, firstname=firstname, surname="<" * 254, email="x@example.com",
        language="en", password="Sample-Password-7x4Q", login_url="https://example.org/login",
        site_name="Example", expires=datetime(2030, 1, 1), must_change_password=True)

    def attempt() -> str:
        templating._compiled.cache_clear()
        try:
            subject, html, text = templating.render(template, context)
        except templating.RenderError as exc:
            return f"refused: {str(exc)[:90]}"
        return f"rendered {len(subject) + len(html) + len(text)} characters"

    started = time.perf_counter()
    outcome = attempt()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    attempt()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"name": name, "outcome": outcome, "seconds": seconds, "peak_mib": peak / 2**20}


def main(argv: list[str]) -> None:
    """Run every bomb in a child process and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.template_bombs")
    parser.add_argument("--one", choices=sorted(BOMBS), help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    print(f"{'bomb':30} {'seconds':>8} {'peak MiB':>9}  outcome")
    for name in BOMBS:
        started = time.perf_counter()
        try:
            child = subprocess.run(
                [sys.executable, "-m", "bench.template_bombs", "--one", name],
                capture_output=True, text=True, timeout=args.timeout, check=False)
        except subprocess.TimeoutExpired:
            print(f"{name:30} {time.perf_counter() - started:>8.1f} {'?':>9}  "
                  f"killed after the {args.timeout:g} s timeout")
            continue
        if child.returncode:
            print(f"{name:30} {'-':>8} {'-':>9}  crashed: {child.stderr.strip()[-200:]}")
            continue
        result = json.loads(child.stdout)
        print(f"{name:30} {result['seconds']:>8.3f} {result['peak_mib']:>9.1f}  "
              f"{result['outcome']}")


if __name__ == "__main__":
    main(sys.argv[1:])
