"""Start-up cost of geo-factory's hook, side by side with the hook switched off.

The ``.pth`` hook runs in every Python process of the environment, so it must cost next to nothing:
goal under 5 ms added to a bare interpreter start and under 3% on ``llamafactory-cli version``.
Runs alternate (on, off, on, off, ...) so machine noise hits both sides alike; medians are reported.

    python benchmarks/bench_startup.py [--repeats 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure(cmd: list[str], repeats: int) -> dict[str, float]:
    on = {k: v for k, v in os.environ.items() if k != "GEO_FACTORY_DISABLE"}
    off = {**on, "GEO_FACTORY_DISABLE": "1"}
    _time(cmd, on), _time(cmd, off)  # warm the page cache and the bytecode caches
    with_hook, without = [], []
    for _ in range(repeats):
        with_hook.append(_time(cmd, on))
        without.append(_time(cmd, off))
    a, b = statistics.median(with_hook), statistics.median(without)
    return {"with_ms": a * 1e3, "without_ms": b * 1e3, "added_ms": (a - b) * 1e3, "ratio": a / b}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    cli = str(Path(sys.executable).parent / "llamafactory-cli")
    cases = {
        "python -c pass": ([sys.executable, "-c", "pass"], args.repeats),
        "llamafactory-cli version": ([cli, "version"], max(5, args.repeats // 4)),
    }
    results = {name: measure(cmd, n) | {"repeats": n} for name, (cmd, n) in cases.items()}

    print("| command | with geo-factory (ms) | GEO_FACTORY_DISABLE=1 (ms) | added (ms) | ratio | runs each |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| `{name}` | {r['with_ms']:.1f} | {r['without_ms']:.1f} | {r['added_ms']:+.1f} | "
            f"{r['ratio']:.3f} | {r['repeats']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
