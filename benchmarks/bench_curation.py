"""What building data costs.

1. ``geo-factory build-corpus`` throughput (MB of input per second of wall time, 2 tasks on 2 workers) against
   the same datatrove steps wired by hand (stock ``GopherQualityFilter``, ``C4QualityFilter``, ``PIIFormatter``,
   exact and MinHash dedup; the offline language filter and word tokenizer are geo-factory's, as stock datatrove
   has no offline ones), alternating, on generated input in a temporary folder. Goal: within 10%.
   Peak memory (the whole process tree, sampled) on a large input against a 10x smaller one. Goal: ratio < 1.5.
2. ``geobench_decontaminate`` on an N-row alpaca set (default 100k) in ``llamafactory-cli train`` (tiny model,
   one step): the decontamination time it logs against LLaMA-Factory's preparation of that dataset (reading,
   converting, tokenizing) in the same run without it. Goal: <= 10%.

    python benchmarks/bench_curation.py [--mb 20] [--repeats 3] [--memory-mb 100] [--rows 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORDS = [
    "basalt",
    "granite",
    "subduction",
    "mantle",
    "crust",
    "seismic",
    "fault",
    "aquifer",
    "sediment",
    "carbonate",
    "isotope",
    "magma",
    "plate",
    "tectonic",
    "erosion",
    "glacier",
    "volcano",
    "mineral",
    "quartz",
    "feldspar",
    "olivine",
    "stratigraphy",
    "Holocene",
    "Jurassic",
    "delta",
    "permeability",
    "porosity",
    "groundwater",
    "the",
    "of",
    "and",
    "in",
    "a",
    "to",
    "is",
    "with",
    "by",
    "from",
    "at",
    "as",
    "on",
    "which",
    "were",
    "are",
    "this",
]
GERMAN = "Der Vulkan ist einer der aktivsten Vulkane Europas und seine Ausbrüche werden seit Jahrhunderten beobachtet."
# Runs argv; prints wall seconds and the peak RSS (MB) of its largest descendant.
# Peak memory of the whole process tree, sampled every 0.1 s: datatrove's workers are children of a forkserver,
# which getrusage(RUSAGE_CHILDREN) does not see once the forkserver is left unreaped.
_MEASURE = """
import json, subprocess, sys, time
import psutil
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
root, total, largest = psutil.Process(proc.pid), 0, 0
while proc.poll() is None:
    rss = []
    for p in [root, *root.children(recursive=True)]:
        try:
            rss.append(p.memory_info().rss)
        except psutil.Error:
            pass
    total, largest = max(total, sum(rss)), max(largest, *rss, 0)
    time.sleep(0.1)
print(json.dumps({"rc": proc.returncode, "wall_s": time.perf_counter() - t,
                  "peak_mb": total / 2**20, "peak_process_mb": largest / 2**20}))
"""


def make_corpus(folder: Path, mb: float, seed: int = 0) -> int:
    """Geoscience-like English documents with numbers and units, 5% exact and 5% near duplicates, 2% German."""
    rng, size, docs = random.Random(seed), 0, []
    folder.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open(folder / f"part{i}.jsonl", "w", encoding="utf-8")) for i in range(4)]
        i = 0
        while size < mb * 1e6:
            roll = rng.random()
            if docs and roll < 0.05:
                text = rng.choice(docs)
            elif docs and roll < 0.10:
                text = rng.choice(docs).replace(" the ", " a ", 1) + " Revised."
            elif roll < 0.12:
                text = " ".join([GERMAN] * 8)
            else:
                sentences = [
                    " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
                    + f" at {rng.uniform(-90, 90):.2f}°N with {rng.randint(1, 900)} mm/yr."
                    for _ in range(rng.randint(5, 40))
                ]
                text = " ".join(s[0].upper() + s[1:] for s in sentences)
                if len(docs) < 2000:
                    docs.append(text)
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            files[i % 4].write(line)
            size += len(line.encode())
            i += 1
    return size


def hand_pipeline(inputs: str, output: str, tasks: int, workers: int) -> None:
    """The same datatrove steps, configured directly (stock classes wherever one works offline)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    from geo_factory.curation.corpus import _doc_text
    from geo_factory.curation.steps import GeoWordTokenizer, LanguageFilter

    out = Path(output)
    tok = GeoWordTokenizer()
    exact = ExactDedupConfig(content_getter=_doc_text)
    minhash = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))

    def filtered():
        return JsonlReader(str(out / "filtered"), glob_pattern="*.jsonl")

    stages = [
        (
            [
                JsonlReader(inputs, glob_pattern="*.jsonl"),
                LanguageFilter(("zh", "en")),
                GopherQualityFilter(min_avg_word_length=2, max_non_alpha_words_ratio=0.5, language=tok),
                C4QualityFilter(
                    remove_citations=False,
                    filter_no_terminal_punct=False,
                    min_num_sentences=-1,
                    min_words_per_line=-1,
                    filter_curly_bracket=False,
                    language=tok,
                ),
                PIIFormatter(),
                JsonlWriter(str(out / "filtered"), compression=None),
            ],
            tasks,
        ),
        ([filtered(), ExactDedupSignature(str(out / "es"), exact)], tasks),
        ([ExactFindDedups(str(out / "es"), str(out / "ed"), exact)], 1),
        (
            [
                filtered(),
                ExactDedupFilter(str(out / "ed"), exact),
                MinhashDedupSignature(str(out / "ms"), minhash, tok),
            ],
            tasks,
        ),
        ([MinhashDedupBuckets(str(out / "ms"), str(out / "mb"), config=minhash)], minhash.num_buckets),
        ([MinhashDedupCluster(str(out / "mb"), str(out / "mi"), config=minhash)], 1),
        (
            [
                filtered(),
                ExactDedupFilter(str(out / "ed"), exact),
                MinhashDedupFilter(str(out / "mi")),
                JsonlWriter(str(out / "corpus"), compression=None),
            ],
            tasks,
        ),
    ]
    previous = None
    for i, (pipeline, n) in enumerate(stages):
        previous = LocalPipelineExecutor(
            pipeline, tasks=n, workers=workers, logging_dir=str(out / f"logs{i}"), depends=previous
        )
    previous.run()


def measure(argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result['rc']}")
    return result


def corpus_runs(tmp: Path, mb: float, repeats: int) -> dict[str, Any]:
    size = make_corpus(tmp / "in", mb)
    ratios, geo_runs, hand_runs = [], [], []
    for r in range(repeats):
        geo = measure(
            [
                str(BIN / "geo-factory"),
                "build-corpus",
                str(tmp / "in"),
                "--output",
                str(tmp / f"g{r}"),
                "--tasks",
                "2",
                "--workers",
                "2",
            ]
        )
        hand = measure([sys.executable, __file__, "--hand", str(tmp / "in"), str(tmp / f"h{r}")])
        geo_runs.append(size / 1e6 / geo["wall_s"])
        hand_runs.append(size / 1e6 / hand["wall_s"])
        ratios.append(geo_runs[-1] / hand_runs[-1])
        print(f"  run {r}: geo-factory {geo_runs[-1]:.2f} MB/s, by hand {hand_runs[-1]:.2f} MB/s", flush=True)
    return {
        "input_mb": size / 1e6,
        "geo_mb_per_s": statistics.median(geo_runs),
        "hand_mb_per_s": statistics.median(hand_runs),
        "ratio_median": statistics.median(ratios),
    }


def memory_runs(tmp: Path, mb: float) -> dict[str, Any]:
    peaks, largest = {}, {}
    for label, size in (("small", mb / 10), ("large", mb)):
        make_corpus(tmp / f"mem_{label}", size, seed=1)
        result = measure(
            [
                str(BIN / "geo-factory"),
                "build-corpus",
                str(tmp / f"mem_{label}"),
                "--output",
                str(tmp / f"mem_out_{label}"),
                "--tasks",
                "2",
                "--workers",
                "2",
            ]
        )
        peaks[label], largest[label] = result["peak_mb"], result["peak_process_mb"]
        print(f"  {label} ({size:g} MB): {json.dumps(result)}", flush=True)
    return {
        "small_mb": mb / 10,
        "large_mb": mb,
        "peak_small_mb": peaks["small"],
        "peak_large_mb": peaks["large"],
        "largest_process_small_mb": largest["small"],
        "largest_process_large_mb": largest["large"],
        "ratio": peaks["large"] / peaks["small"],
    }


_STAMP = re.compile(r"^\[\w+\|.*?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")  # LLaMA-Factory's and transformers' logs


def decontamination_runs(tmp: Path, rows: int, model: Path, task_dir: Path) -> dict[str, Any]:
    """LLaMA-Factory's preparation (its "Loading dataset" line to the model's loading, which follows) vs the scan."""
    rng = random.Random(0)
    data = [
        {
            "instruction": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30))) + "?",
            "input": "",
            "output": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) + ".",
        }
        for _ in range(rows)
    ]
    work = tmp / "decon"
    (work / "data").mkdir(parents=True)
    (work / "data" / "big.json").write_text(json.dumps(data))
    (work / "data" / "dataset_info.json").write_text(json.dumps({"big": {"file_name": "big.json"}}))
    base = (
        f"model_name_or_path: {model}\nstage: sft\ndo_train: true\nfinetuning_type: lora\nlora_target: all\n"
        "dataset: big\ntemplate: mistral\ncutoff_len: 256\noverwrite_cache: true\nreport_to: none\n"
        "per_device_train_batch_size: 2\nmax_steps: 1\npreprocessing_num_workers: 2\n"
    )
    out = {}
    for label, extra in (
        ("without", ""),
        ("with", f"geobench_decontaminate: true\ngeobench_decontaminate_task_dir: {task_dir}\n"),
    ):
        (work / f"{label}.yaml").write_text(base + f"output_dir: {work / label}\n" + extra)
        proc = subprocess.run(
            [str(BIN / "llamafactory-cli"), "train", f"{label}.yaml"], cwd=work, capture_output=True, text=True
        )
        log = proc.stdout + proc.stderr
        if proc.returncode:
            raise RuntimeError(log[-3000:])
        stamps = [(m.group(1), line) for line in log.splitlines() if (m := _STAMP.search(line))]
        start = next(t for t, line in stamps if "Loading dataset" in line)
        # stdout and stderr come apart: go by time, not by order (1 s resolution)
        end = min(t for t, line in stamps if "loading configuration file" in line and t > start)
        out[f"prepare_s_{label}"] = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    report = json.loads((work / "with" / "geobench_decontamination.json").read_text())
    out["decontaminate_s"] = report["datasets"][0]["seconds"]
    out["index_s"] = report["datasets"][0]["index_seconds"]  # reading GeoBench, once per run
    out["processes"] = report["datasets"][0]["processes"]
    out["rows"] = rows
    out["ratio"] = out["decontaminate_s"] / out["prepare_s_without"]
    out["ratio_with_index"] = (out["decontaminate_s"] + out["index_s"]) / out["prepare_s_without"]
    return out


def main() -> None:
    if sys.argv[1:2] == ["--hand"]:
        hand_pipeline(sys.argv[2], sys.argv[3], tasks=2, workers=2)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-mb", type=float, default=100, help="Large input of the memory test; 0 skips.")
    parser.add_argument("--rows", type=int, default=100_000, help="Rows of the decontamination test; 0 skips.")
    parser.add_argument("--task-dir", default=str(REPO.parent / "shared" / "geobench" / "k2"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.repeats:
            results["throughput"] = corpus_runs(tmp, args.mb, args.repeats)
            print(json.dumps(results["throughput"]), flush=True)
        if args.memory_mb:
            results["memory"] = memory_runs(tmp, args.memory_mb)
            print(json.dumps(results["memory"]), flush=True)
        if args.rows:
            from geo_factory.tiny import build_tiny_model

            model = build_tiny_model(tmp / "tiny-mistral")
            results["decontamination"] = decontamination_runs(tmp, args.rows, model, Path(args.task_dir))
            print(json.dumps(results["decontamination"]), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
