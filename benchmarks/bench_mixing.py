"""``mix_strategy: interleave_tokens`` (issue 34) through ``llamafactory-cli`` on the tiny model or ``--model``: shares, cost.

Two generated corpora of demo paragraphs whose documents differ about 6x in length (``short``: one paragraph,
``long``: six), registered in a temporary ``data/``.

1. Realized shares, from the ``tokens_<dataset>`` the run logs: packed ``pt`` (4 x 128-token blocks a step), the
   largest deviation from the requested share over every window of 50 consecutive optimizer steps; whole documents
   (``packing: false``, ``cutoff_len`` above the longest), the deviation over the run. Beside them, what
   LLaMA-Factory's ``interleave_under`` with the same ``interleave_probs`` gives in tokens (its own
   ``interleave_datasets`` on the documents' token counts, same seed and number of documents).
2. Overhead: the packed run against a ``concat`` run of the same steps on the same corpora (per-source loss
   included), alternating; medians of the paired ratios of wall and CPU time. Goal: at most 1.03.
3. Memory (``--modes memory``): the two corpora generated at a small and a large total size (under the system's
   temporary folder, deleted afterwards), a short packed run of each on each size, ``interleave_tokens`` and beside
   it ``concat`` (LLaMA-Factory's own loading and preprocessing alone); peak RSS of the command's largest process
   (fresh child per run, fresh ``datasets`` cache). Goal: large / small under 1.2 for ``interleave_tokens``.

    python benchmarks/bench_mixing.py [--modes shares,overhead,memory] [--steps 300] [--repeats 3] [--model DIR]
        [--memory-gb 0.1,1] [--memory-steps 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import bench_tspt


SHARES = (0.5, 0.5)
NAMES = ("short_docs", "long_docs")
WINDOW = 50


def _corpora(work: Path) -> None:
    from geo_factory.tiny import demo_texts

    paragraphs, rng = list(demo_texts()), random.Random(0)
    (work / "data").mkdir()
    for name, per_doc, docs in (("short_docs", 1, 1200), ("long_docs", 6, 200)):
        lines = (json.dumps({"text": " ".join(rng.sample(paragraphs, per_doc))}) for _ in range(docs))
        (work / "data" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    registry = {name: {"file_name": f"{name}.jsonl", "columns": {"prompt": "text"}} for name in NAMES}
    (work / "data" / "dataset_info.json").write_text(json.dumps(registry))


def _args(steps: int, out: str, mix: bool, packing: bool) -> list[str]:
    args = [
        str(bench_tspt.PT_YAML),
        f"dataset={','.join(NAMES)}",
        f"max_steps={steps}",
        f"output_dir={out}",
        "save_steps=100000",
        "plot_loss=false",
        f"packing={str(packing).lower()}",
        *(["cutoff_len=2048"] if not packing else []),
    ]
    if mix:
        args += ["mix_strategy=interleave_tokens", f"interleave_probs={','.join(map(str, SHARES))}"]
    return args


def _logged_tokens(output_dir: Path) -> list[list[int]]:
    """Per logging step, each dataset's trained tokens so far."""
    rows = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines() if line]
    return [[row[f"tokens_{name}"] for name in NAMES] for row in rows if "loss" in row]


def _deviation(start: list[int], end: list[int]) -> float:
    """Largest |share - requested| between two points of the run, in percentage points."""
    got = [b - a for a, b in zip(start, end)]
    return 100 * max(abs(n / sum(got) - share) for n, share in zip(got, SHARES))


def _baseline(work: Path, documents: int) -> list[float]:
    """LLaMA-Factory's ``interleave_under`` of the same documents: each source's share of the tokens it draws."""
    from datasets import Dataset, interleave_datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(work / "models" / "tiny-mistral")
    sources = []
    for name in NAMES:
        texts = [json.loads(line)["text"] for line in (work / "data" / f"{name}.jsonl").read_text().splitlines()]
        lengths = [len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]  # + eos
        sources.append(Dataset.from_dict({"tokens": lengths, "source": [name] * len(lengths)}))
    mixed = interleave_datasets(sources, probabilities=list(SHARES), seed=42, stopping_strategy="first_exhausted")
    drawn = mixed.select(range(min(documents, len(mixed))))
    totals = dict.fromkeys(NAMES, 0)
    for row in drawn:
        totals[row["source"]] += row["tokens"]
    return [totals[name] / sum(totals.values()) for name in NAMES]


def shares(work: Path, steps: int) -> dict[str, Any]:
    packed = bench_tspt._run(work, "packed", *_args(steps, "packed", mix=True, packing=True))
    tokens = _logged_tokens(work / "packed")
    windows = [_deviation(a, b) for a, b in zip(tokens, tokens[WINDOW:])]
    whole_steps = max(steps // 3, 1)
    bench_tspt._run(work, "whole", *_args(whole_steps, "whole", mix=True, packing=False))
    whole = _logged_tokens(work / "whole")
    documents = whole_steps * 4  # rows = documents without packing
    return {
        "packed_steps": len(tokens),
        "packed_realized": [n / sum(tokens[-1]) for n in tokens[-1]],
        "packed_worst_window_pp": max(windows),
        "packed_windows": len(windows),
        "packed_run": packed,
        "whole_steps": len(whole),
        "whole_realized": [n / sum(whole[-1]) for n in whole[-1]],
        "whole_run_pp": _deviation([0] * len(NAMES), whole[-1]),
        "interleave_under_realized": _baseline(work, documents),
        "documents": documents,
    }


def overhead(work: Path, steps: int, repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"tokens": [], "concat": []}
    for repeat in range(repeats + 1):  # the first round warms the caches: not counted
        for name in runs:
            out = f"{name}_{repeat}"
            run = bench_tspt._run(work, out, *_args(steps, out, mix=name == "tokens", packing=True))
            run["train_s"] = bench_tspt._train_runtime(work / out)
            shutil.rmtree(work / out)
            print(f"  {name} round {repeat}: " + ", ".join(f"{k} {v:,.1f}" for k, v in run.items()), file=sys.stderr)
            if repeat:
                runs[name].append(run)
    keys = ("wall_s", "cpu_s", "train_s")
    result: dict[str, Any] = {
        name: {key: statistics.median(run[key] for run in r) for key in keys} for name, r in runs.items()
    }
    result["ratio"] = {
        key: statistics.median(a[key] / b[key] for a, b in zip(runs["tokens"], runs["concat"])) for key in keys
    }
    return result


def _sized_corpora(folder: Path, size: int) -> None:
    """``short_docs`` and ``long_docs`` of ``size`` bytes together (half each), as :func:`_corpora` writes them."""
    from geo_factory.tiny import demo_texts

    paragraphs, rng = list(demo_texts()), random.Random(0)
    folder.mkdir(parents=True)
    for name, per_doc in (("short_docs", 1), ("long_docs", 6)):
        with open(folder / f"{name}.jsonl", "wb") as f:
            written = 0
            while written < size // 2:
                written += f.write((json.dumps({"text": " ".join(rng.sample(paragraphs, per_doc))}) + "\n").encode())
    registry = {name: {"file_name": f"{name}.jsonl", "columns": {"prompt": "text"}} for name in NAMES}
    (folder / "dataset_info.json").write_text(json.dumps(registry))


def _anon_peak(marker: str, stop: threading.Event, peak: list[int]) -> None:
    """Until ``stop``: the largest ``RssAnon`` (KiB) of a process whose command line holds ``marker``, every 0.2 s.

    Peak RSS counts the pages of the memory-mapped Arrow caches the process has read, which the kernel drops under
    pressure; the anonymous memory is what the process itself holds."""
    while not stop.wait(0.2):
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    status = (proc / "status").read_text()
                    peak[0] = max(peak[0], int(status.split("RssAnon:")[1].split()[0]))
            except (OSError, IndexError):  # the process ended meanwhile
                continue


def memory(work: Path, sizes_gb: list[float], steps: int) -> dict[str, Any]:
    """Peak RSS of a short packed run on each corpus size, ``interleave_tokens`` and ``concat``."""
    result: dict[str, Any] = {}
    for size_gb in sizes_gb:
        label, folder = f"{size_gb:g} GB", work / f"corpus_{size_gb:g}"
        _sized_corpora(folder, int(size_gb * 1e9))
        print(f"  wrote {label}", file=sys.stderr)
        for name in ("tokens", "concat"):
            out = f"mem_{name}_{size_gb:g}"
            args = [*_args(steps, out, mix=name == "tokens", packing=True), f"dataset_dir={folder}"]
            stop, peak = threading.Event(), [0]
            sampler = threading.Thread(target=_anon_peak, args=(f"output_dir={out}", stop, peak))
            sampler.start()
            run = bench_tspt._run(work, out, *args)
            stop.set()
            sampler.join()
            run["peak_anon_mib"] = peak[0] / 1024
            shutil.rmtree(work / out)
            shutil.rmtree(work / "hf_home", ignore_errors=True)  # each run loads and preprocesses from the JSON
            print(f"  {name} {label}: " + ", ".join(f"{k} {v:,.1f}" for k, v in run.items()), file=sys.stderr)
            result.setdefault(name, {})[label] = run
        shutil.rmtree(folder)
    small, large = (f"{size:g} GB" for size in (sizes_gb[0], sizes_gb[-1]))
    result["ratio"] = {
        f"{name} {key}": result[name][large][key] / result[name][small][key]
        for name in ("tokens", "concat")
        for key in ("peak_rss_mib", "peak_anon_mib")
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="Optimizer steps of the packed runs (4 x 128 tokens).")
    parser.add_argument("--repeats", type=int, default=3, help="Measured rounds of the overhead comparison.")
    parser.add_argument("--model", type=Path, help="A model folder (default: build the tiny model, minutes on a CPU).")
    parser.add_argument("--modes", default="shares,overhead", help="Any of shares, overhead, memory (comma list).")
    parser.add_argument("--memory-gb", default="0.1,1", help="Corpus sizes of the memory mode, GB, small first.")
    parser.add_argument("--memory-steps", type=int, default=20, help="Optimizer steps of each memory run.")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    modes = args.modes.split(",")

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_mixing_") as tmp:
        work = Path(tmp)
        bench_tspt.model_into(work, args.model)
        _corpora(work)
        if "shares" in modes:
            print("shares:", file=sys.stderr)
            results["shares"] = shares(work, args.steps)
        if "overhead" in modes:
            print("overhead:", file=sys.stderr)
            results["overhead"] = overhead(work, args.steps, args.repeats)
        if "memory" in modes:
            print("memory:", file=sys.stderr)
            results["memory"] = memory(work, [float(x) for x in args.memory_gb.split(",")], args.memory_steps)

    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
