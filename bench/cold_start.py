"""Cold-start benchmark: how long a fresh Python process takes to `import function_app`.

Run it from the repository root:

    .venv/bin/python bench/cold_start.py               # 15 runs
    .venv/bin/python bench/cold_start.py --runs 30 --threshold-ms 20

Each run is a new interpreter (`python -c "import function_app"`, bytecode already compiled, so the figure is what
a warm disk and a cold process pay, as a Functions worker does when it starts). The time is measured inside the
child, around the import alone, so interpreter start-up is reported apart. Then one more run with
`python -X importtime` lists the modules whose import took longer than the threshold (cumulative time, i.e. with
everything they import), so an SDK imported at module load instead of where it is used shows up by name.

What it prints:

    interpreter   python -c pass: the floor every run pays before any import
    import        import function_app: p50, p95, min and max over the runs, in milliseconds
    slow imports  modules over the threshold in the -X importtime run, slowest first, nested ones indented

The exit status is 1 if any run failed to import the app.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEASURE = (
    "import time; t = time.perf_counter(); import function_app; "
    "print(round((time.perf_counter() - t) * 1000, 2))"
)
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)")


def child_env() -> dict[str, str]:
    """No Switchboard settings from the shell and no local.settings.json: the app's import must not depend on them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "AZURE_", "ACS_", "COSMOS_"))}
    env.update(SWITCHBOARD_SKIP_LOCAL_SETTINGS="1", PYTHONDONTWRITEBYTECODE="0")
    return env


def run(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def interpreter_ms(runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run("pass")
        times.append((time.perf_counter() - start) * 1000)
    return percentile(times, 50)


def slow_imports(threshold_ms: float) -> list[tuple[float, int, str]]:
    """(cumulative ms, depth, module) for each import over the threshold, in import order."""
    result = run("import function_app", "-X", "importtime")
    rows = []
    for line in result.stderr.splitlines():
        if match := _IMPORTTIME.match(line):
            cumulative_ms = int(match[2]) / 1000
            if cumulative_ms >= threshold_ms:
                rows.append((cumulative_ms, len(match[3]) // 2, match[4]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes to time (default 15)")
    parser.add_argument("--threshold-ms", type=float, default=50.0, help="list imports slower than this (default 50)")
    args = parser.parse_args(argv)

    warm = run(MEASURE)  # compiles bytecode and warms the disk cache; not counted
    if warm.returncode != 0:
        print(f"import function_app failed:\n{warm.stderr}", file=sys.stderr)
        return 1
    times: list[float] = []
    for _ in range(args.runs):
        result = run(MEASURE)
        if result.returncode != 0:
            print(f"import function_app failed:\n{result.stderr}", file=sys.stderr)
            return 1
        times.append(float(result.stdout.strip().splitlines()[-1]))

    print(f"cold start: import function_app in a fresh process, {args.runs} runs ({sys.executable})")
    print(f"  interpreter   {interpreter_ms(5):7.1f} ms  (python -c pass, p50; paid before any import)")
    print(f"  import        p50 {percentile(times, 50):6.1f} ms   p95 {percentile(times, 95):6.1f} ms   "
          f"min {min(times):6.1f} ms   max {max(times):6.1f} ms")
    rows = slow_imports(args.threshold_ms)
    print(f"  slow imports  (cumulative, over {args.threshold_ms:.0f} ms, python -X importtime; nested ones indented)")
    for cumulative_ms, depth, module in rows:
        print(f"    {cumulative_ms:7.1f} ms  {'  ' * depth}{module}")
    if not rows:
        print("    none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
