"""Building data: GeoBench decontamination in `llamafactory-cli train`, build-corpus, build-sft."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import CLI, GEO_FACTORY, REPO, SHARED_GEOBENCH, run_cli, run_geo_factory, workdir
from geo_factory.curation.decontaminate import PARALLEL_ROWS


FIXTURE_GEOBENCH = REPO / "tests" / "fixtures" / "geobench" / "k2"
GEOBENCH = SHARED_GEOBENCH / "k2" if (SHARED_GEOBENCH / "k2").is_dir() else FIXTURE_GEOBENCH


# ---------------------------------------------------------------------------------------------
# Decontamination


CLEAN_SFT = [
    ("What is the Mohs scale used for?", "It ranks minerals by scratch hardness, from talc (1) to diamond (10)."),
    ("Why is basalt dark?", "It is rich in iron and magnesium minerals such as pyroxene and olivine."),
    ("Name two kinds of plate boundary.", "Divergent boundaries, where ridges form, and convergent ones."),
    ("What does a seismometer record?", "Ground motion: the arrival of P waves, S waves and surface waves."),
    ("How do deltas grow?", "Sediment is deposited where a river slows on entering a lake or the sea."),
    ("What is the Moho?", "The boundary between the crust and the mantle, where seismic velocity jumps."),
    ("什么是断层？", "断层是岩层沿破裂面发生明显位移的地质构造。"),
    ("What is limestone made of?", "Mostly calcite, often from the shells of marine organisms."),
]


def _choice_questions(n: int) -> list:
    from geo_factory.eval.families.geobench import load_all
    from geo_factory.eval.tasks import SUITES

    published = load_all(str(GEOBENCH))
    questions = [q for name in SUITES["geobench"] if name in published for q in published[name]]
    usable = [
        q for q in questions if len(q.stem.split()) >= 5 and len(q.options) >= 3 and all(t for _, t in q.options)
    ]
    return random.Random(0).sample(usable, n)


def _render(question, options) -> str:
    lines = "\n".join(f"{'ABCDEFG'[i]}. {text}" for i, (_, text) in enumerate(options))
    return f"{question.stem}\nChoose from:\n\n{lines}"


PLANTED_IDS: set[str] = set()


def _planted_rows() -> tuple[list[dict], list[int]]:
    """Alpaca rows: the clean ones and GeoBench questions planted verbatim, re-cased and with options reordered."""
    rows = [{"instruction": q, "input": "", "output": a} for q, a in CLEAN_SFT]
    planted = []
    for i, q in enumerate(_choice_questions(6)):
        options = list(q.options)
        if i % 3 == 1:
            text = _render(q, options).upper()
        elif i % 3 == 2:
            text = _render(q, options[::-1])
        else:
            text = _render(q, options)
        planted.append(len(rows))
        PLANTED_IDS.add(f"{q.task}:{q.id}")
        rows.append({"instruction": text, "input": "", "output": f"The answer is {q.answer}."})
    return rows, planted


@pytest.fixture(scope="module")
def decon_work(tmp_path_factory, tiny_model) -> tuple[Path, list[dict], list[int]]:
    rows, planted = _planted_rows()
    registry = {
        "planted_sft": {"file_name": "planted_sft.json"},
        "planted_sft_big": {"file_name": "planted_sft_big.json"},
        "planted_pt": {"file_name": "planted_pt.jsonl", "columns": {"prompt": "text"}},
        "clean_pt": {"file_name": "clean_pt.jsonl", "columns": {"prompt": "text"}},
    }
    work = workdir(tmp_path_factory.mktemp("decon"), tiny_model, registry)
    (work / "data" / "planted_sft.json").write_text(json.dumps(rows, ensure_ascii=False))
    # big enough for the scan to run on preprocessing_num_workers processes: the planted rows spread through it
    clean_rows = [row for i, row in enumerate(rows) if i not in planted]
    big = [clean_rows[i % len(clean_rows)] for i in range(PARALLEL_ROWS)]
    for i, row in zip(range(0, PARALLEL_ROWS, PARALLEL_ROWS // len(planted)), (rows[i] for i in planted)):
        big.insert(i, row)
    (work / "data" / "planted_sft_big.json").write_text(json.dumps(big, ensure_ascii=False))
    texts = [f"{r['instruction']}\n{r['output']}" for r in rows]
    (work / "data" / "planted_pt.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    clean = [f"{q} {a} " * 8 for q, a in CLEAN_SFT]
    (work / "data" / "clean_pt.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in clean))
    return work, rows, planted


def _train_yaml(work: Path, name: str, **config) -> Path:
    base = {
        "model_name_or_path": "models/tiny-mistral",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "cutoff_len": 128,
        "overwrite_cache": True,
        "output_dir": f"saves/{name}",
        "overwrite_output_dir": True,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "max_steps": 1,
        "logging_steps": 1,
        "geobench_decontaminate": True,
        "geobench_decontaminate_task_dir": str(GEOBENCH),
        **config,
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in base.items() if v is not None}))
    return path


def _check_report(out: Path, dataset: str, rows: list[dict], planted: list[int]) -> dict:
    report = json.loads((out / "geobench_decontamination.json").read_text())
    (entry,) = [d for d in report["datasets"] if dataset in d["dataset"]]
    assert entry["rows"] == len(rows) and entry["dropped"] == len(planted), entry
    assert entry["kept"] == len(rows) - len(planted)
    assert set(entry["geobench_ids"]) >= PLANTED_IDS  # and GeoBench's own duplicates of them
    return entry


@pytest.mark.parametrize("dataset,workers", [("planted_sft", None), ("planted_sft_big", 2)])
def test_decontamination_sft_drops_every_planted_row_and_no_clean_one(decon_work, cli_env, dataset, workers) -> None:
    """In one process, and (a set of PARALLEL_ROWS rows) on LLaMA-Factory's preprocessing workers."""
    work, rows, planted = decon_work
    if dataset == "planted_sft_big":
        rows = json.loads((work / "data" / f"{dataset}.json").read_text())
        planted = [i for i, row in enumerate(rows) if row["output"].startswith("The answer is")]
    config = _train_yaml(
        work, dataset, stage="sft", dataset=dataset, template="mistral", preprocessing_num_workers=workers
    )
    proc = run_cli("train", config, cwd=work, env=cli_env)
    log = proc.stdout + proc.stderr
    assert f"dropped {len(planted)} of {len(rows)} rows" in log, log[-3000:]
    assert f"Num examples = {len(rows) - len(planted):,}" in log  # what the trainer got: every clean row
    assert f"on {workers or 1} process" in log
    _check_report(work / "saves" / dataset, dataset, rows, planted)


def test_decontamination_pt_and_tspt(decon_work, cli_env) -> None:
    work, rows, planted = decon_work
    run_cli("train", _train_yaml(work, "pt", stage="pt", dataset="planted_pt,clean_pt"), cwd=work, env=cli_env)
    _check_report(work / "saves" / "pt", "planted_pt", rows, planted)
    clean = json.loads((work / "saves" / "pt" / "geobench_decontamination.json").read_text())["datasets"]
    assert [d["dropped"] for d in clean if "clean_pt" in d["dataset"]] == [0]

    tspt = _train_yaml(
        work,
        "tspt",
        stage="tspt",
        tspt_stage1_dataset="planted_pt,clean_pt",
        tspt_stage1_mix="0.5,0.5",
        tspt_stage1_tokens=256,
        tspt_stage2_dataset="clean_pt,planted_pt",
        tspt_stage2_mix="0.5,0.5",
        tspt_stage2_tokens=256,
        max_steps=None,
    )
    run_cli("train", tspt, cwd=work, env=cli_env)
    for stage in ("stage1", "stage2"):
        _check_report(work / "saves" / "tspt" / stage, "planted_pt", rows, planted)


def test_decontaminate_command_on_files(decon_work, cli_env, tmp_path) -> None:
    work, rows, planted = decon_work
    run_geo_factory(
        "decontaminate",
        work / "data" / "planted_sft.json",
        "--task-dir",
        GEOBENCH,
        "--output",
        tmp_path,
        cwd=work,
        env=cli_env,
    )
    clean = json.loads((tmp_path / "planted_sft.json").read_text())
    assert clean == [r for i, r in enumerate(rows) if i not in planted]
    report = json.loads((tmp_path / "geobench_decontamination.json").read_text())
    assert sorted(int(i) for i in report["datasets"][0]["dropped_rows"]) == planted

    bad = run_geo_factory("decontaminate", "nope.csv", "--output", tmp_path, cwd=work, env=cli_env, check=False)
    assert bad.returncode == 2 and "nope.csv" in bad.stderr and "Traceback" not in bad.stderr


def test_decontaminate_refuses_outputs_over_inputs_before_writing(tmp_path, cli_env) -> None:
    """Two files of one name would both be written to OUTPUT/x.json, the second over the first's cleaned rows; an
    output folder that holds an input would write over it, and an output that is an input file is no folder."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.json").write_text(json.dumps([{"instruction": folder, "output": "ok"}]))
    (tmp_path / "a" / "geobench_decontamination.json").write_text("[]")
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    refusals = {
        ("a/x.json", "b/x.json", "--output", "c6"): "a/x.json and b/x.json would both be written to c6/x.json: give "
        "files of different names, or run once per file with its own --output.",
        ("a/x.json", "--output", "a"): "--output a would write a/x.json over the input a/x.json: choose another "
        "folder (the inputs stay as they are).",
        ("b/x.json", "--output", "./b/../b/"): "--output b/../b would write b/../b/x.json over the input b/x.json",
        ("a/geobench_decontamination.json", "--output", "a"): "--output a would write "
        "a/geobench_decontamination.json over the input a/geobench_decontamination.json",
        ("a/x.json", "--output", "a/x.json"): "--output a/x.json is an input file: name a folder for the clean files.",
    }
    for args, message in refusals.items():
        proc = run_geo_factory("decontaminate", *args, cwd=tmp_path, env=cli_env, check=False)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith(f"geo-factory decontaminate: error: {message}"), proc.stderr
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x.json", "--ngram", "0"], "argument --ngram: must be an integer >= 1, got '0'"),
        (["x.json", "--ngram", "-5"], "argument --ngram: must be an integer >= 1, got '-5'"),
        (["nope.json"], "nope.json: no such file."),
        (["nope.csv"], "nope.csv: expected a .json (list of rows) or .jsonl file."),
        (["x.json", "rows.jsonl"], "rows.jsonl, line 2: not valid JSON (Expecting value: line 1 column 1 (char 0))."),
        (["broken.json"], "broken.json: not valid JSON (Expecting ',' delimiter: line 1 column 9 (char 8))."),
    ],
)
def test_decontaminate_refuses_bad_arguments_and_files_before_writing(
    tmp_path, monkeypatch, capsys, args, message
) -> None:
    from geo_factory.cli import main

    monkeypatch.chdir(tmp_path)
    Path("x.json").write_text("[]")
    Path("rows.jsonl").write_text('{"text": "fine"}\nnot json\n')
    Path("broken.json").write_text("[{}, {} {}]")
    with pytest.raises(SystemExit) as stop:
        main(["decontaminate", *args, "--output", "out"])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not Path("out").exists()


# ---------------------------------------------------------------------------------------------
# build-corpus

GEO_DOCS = [
    "The Tibetan Plateau rose as the Indian plate collided with Eurasia about 50 Ma ago. GPS stations at 30.5°N, "
    "91.1°E record shortening of 20 mm/yr, and the Moho lies at 70 km depth beneath Lhasa, twice the thickness of "
    "normal continental crust. Seismic tomography (Vp = 8.1 km/s) images a cold Indian slab below the suture. "
    "References: Molnar & Tapponnier (1975), Science 189, 419-426.",
    "Groundwater flow in the Ogallala aquifer follows Darcy's law, q = -K dh/dl, with hydraulic conductivity K "
    "between 10^-5 and 10^-3 m/s in the sands and gravels. Water tables fell by more than 30 m in parts of Texas "
    "and Kansas since irrigation began in the 1940s, while recharge from playa lakes stays below 25 mm per year "
    "across most of the southern High Plains.",
    "Table 2. Major oxides (wt%) of basalt samples from Hawaii:\nSample | SiO2 | MgO | FeO\nKIL-1 | 49.8 | 7.2 | "
    "11.3\nKIL-2 | 50.1 | 6.9 | 11.0\nMLO-3 | 48.7 | 9.4 | 11.8\nThe tholeiitic lavas of Kilauea and Mauna Loa show "
    "olivine control lines, and the MgO variation reflects fractional crystallization in shallow magma chambers "
    "beneath the summit calderas of both volcanoes.",
    "Carbonate platforms of the Triassic Dolomites record sea-level cycles of about 100 kyr. The platform tops show "
    "peritidal facies with stromatolites and tepee structures, while the slopes shed megabreccias into basins "
    "filled by volcaniclastic turbidites. Oxygen isotope values (d18O = -2.1 permil VPDB) point to warm surface "
    "waters during the Ladinian, when the reefs grew fastest across the western Tethys.",
]
ZH_DOC = (
    "长江三角洲是在全新世海平面上升后由长江携带的大量泥沙堆积形成的。钻孔资料显示，三角洲沉积厚度可达六十米，"
    "自下而上依次为河床相砂砾、河口湾相粉砂和三角洲前缘相粘土。联系人邮箱 delta.lab@example.edu.cn，电话 13912345678。"
    "如需数据请发邮件至alice@example.com或致电13812345678。"  # as Chinese is written: no space before either
)
EN_PII = " Data: write to j.smith@uni.ac.uk or call +44 20 7946 0958."
JUNK = [
    "Lorem ipsum dolor sit amet, this cheap geology course will change your life forever. Buy now and save on "
    "every order of rocks, minerals and fossils shipped to your home, with a money back guarantee for all buyers. "
    "Our friendly team answers questions about the course every day of the week, and new lessons about volcanoes, "
    "earthquakes and glaciers are added each month for students of every age.",
    "Click here!!! Best deals!!!",
]
GERMAN = (
    "Der Vulkan Ätna auf Sizilien ist einer der aktivsten Vulkane Europas. Seine Ausbrüche werden seit "
    "Jahrhunderten beobachtet, und die Lavaströme haben die Landschaft der Insel geprägt. Geologen messen dort "
    "täglich die Gasemissionen und die Verformung des Bodens mit Satelliten und Neigungsmessern."
)


def _corpus_inputs(folder: Path) -> None:
    folder.mkdir()
    near = GEO_DOCS[1].replace("Texas", "Texas,").replace("playa lakes", "playa-lakes")
    rows = [{"text": t} for t in (GEO_DOCS[0], GEO_DOCS[1], GEO_DOCS[0], near, JUNK[0], GERMAN)]
    rows.insert(2, {"content": GEO_DOCS[2]})  # no `text` column: skipped, and counted
    (folder / "web.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [GEO_DOCS[2], JUNK[1]]}), folder / "papers.parquet")
    (folder / "notes.txt").write_text(GEO_DOCS[3] + EN_PII + "\n\n\n   extra   spaces ")
    (folder / "zh.txt").write_text(ZH_DOC)


def test_build_corpus_removes_exactly_the_planted_documents_and_resumes(tmp_path, cli_env) -> None:
    _corpus_inputs(tmp_path / "raw")
    out = tmp_path / "geo_clean"
    args = ["build-corpus", "raw", "--output", str(out), "--workers", "1"]
    killed = subprocess.Popen(
        [GEO_FACTORY, *args],
        cwd=tmp_path,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not list((out / "work" / "logs" / "filter" / "completions").glob("*")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (out / "report.json").exists()

    proc = run_geo_factory(*args, cwd=tmp_path, env=cli_env)  # the same command again: finished shards are skipped
    assert "Skipping 1 already completed tasks" in proc.stderr
    kept = [json.loads(line)["text"] for path in sorted((out / "corpus").glob("*.jsonl")) for line in path.open()]
    assert len(kept) == 5, kept  # the four geoscience documents and the Chinese one
    for doc in GEO_DOCS[:3]:  # formulas, coordinates, units, tables and references kept as written
        assert doc in kept
    # whitespace normalised, e-mail and phone replaced in English text and in Chinese (after a space, a `：` or
    # directly after a character)
    assert GEO_DOCS[3] + " Data: write to <email> or call <phone>.\n\nextra spaces" in kept
    (zh,) = [t for t in kept if "长江" in t]
    assert zh.endswith("联系人邮箱 <email>，电话 <phone>。如需数据请发邮件至<email>或致电<phone>。"), zh

    report = json.loads((out / "report.json").read_text())
    removed = {s["step"]: s["docs_in"] - s["docs_out"] for s in report["steps"]}
    assert removed == {
        "normalise": 0,
        "language": 1,
        "quality (Gopher)": 1,
        "quality (C4)": 1,
        "pii": 0,
        "exact dedup": 1,
        "near dedup (MinHash)": 1,
    }, report["steps"]
    assert report["docs_in"] == 10 and report["docs_out"] == 5
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["language"]["removed_examples"][0]["text"].startswith("Der Vulkan")
    assert steps["quality (C4)"]["reasons"] == {"lorem_ipsum": 1}
    assert steps["pii"]["modified"] == 2
    assert report["rows_without_text"] == 1
    assert "warning: skipped 1 input rows without text (no `text` column" in proc.stderr, proc.stderr
    tokens = [(s["tokens_in"], s["tokens_out"]) for s in report["steps"]]
    assert all(b <= a for a, b in tokens) and tokens[0][0] > tokens[-1][1] > 0
    assert "near dedup (MinHash)" in proc.stdout and "removed by language" in proc.stdout
    info = json.loads((out / "dataset_info.json").read_text())
    assert info == {"geo_clean": {"file_name": "corpus", "columns": {"prompt": "text"}}}


def test_build_corpus_language_codes_are_checked_before_any_work(tmp_path) -> None:
    from geo_factory.curation.corpus import CorpusConfig

    with pytest.raises(ValueError, match=r"--languages xx: not a language the offline detector knows; .* fr, "):
        CorpusConfig(inputs=["raw"], output=str(tmp_path / "out"), languages=("fr", "xx"))
    with pytest.raises(ValueError, match="--languages is empty"):
        CorpusConfig(inputs=["raw"], output=str(tmp_path / "out"), languages=())
    CorpusConfig(inputs=["raw"], output=str(tmp_path / "out"), languages=(), steps_off=("language",))
    assert not (tmp_path / "out").exists()


def test_build_corpus_keeps_no_document_and_resumes_only_the_same_build(tmp_path, cli_env) -> None:
    """Filters that keep nothing give an empty corpus and a warning (datatrove's later stages found no files);
    another build into the same folder is refused, naming the difference, until --overwrite."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("short line one\nshort line two\n")
    args = ["build-corpus", "raw", "--output", "out", "--workers", "1", "--languages", "fr"]
    empty = run_geo_factory(*args, cwd=tmp_path, env=cli_env)
    assert "warning: the steps kept none of the 1 documents read; out/corpus is empty" in empty.stderr
    assert list((tmp_path / "out" / "corpus").iterdir()) == []
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["docs_in"], report["docs_out"]) == (1, 0) and report["settings"]["languages"] == ["fr"]
    assert report["steps"][-1]["step"] == "language" and report["steps"][-1]["reasons"] == {"language_en": 1}

    (tmp_path / "raw" / "more.txt").write_text(GEO_DOCS[0])
    other = run_geo_factory(*args[:-1], "en", cwd=tmp_path, env=cli_env, check=False)
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr
    assert (
        "--output out holds a corpus built from other inputs or settings (languages was ['fr'], now ['en']; "
        f"new inputs: {tmp_path / 'raw' / 'more.txt'}); a run resumes only the same build" in other.stderr
    ), other.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report  # untouched

    again = run_geo_factory(*args[:-1], "en", "--overwrite", cwd=tmp_path, env=cli_env)
    assert "warning" not in again.stderr
    kept = [json.loads(line)["text"] for path in (tmp_path / "out" / "corpus").glob("*.jsonl") for line in path.open()]
    assert kept == [GEO_DOCS[0]]

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "dataset_info.json").write_text("{}")
    foreign = run_geo_factory("build-corpus", "raw", "--output", "mine", cwd=tmp_path, env=cli_env, check=False)
    assert foreign.returncode == 2 and "--output mine is not empty and holds no build-corpus record" in foreign.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["dataset_info.json"]


def test_build_corpus_on_slurm_writes_dependent_array_jobs(tmp_path, cli_env) -> None:
    """No cluster here: a stand-in `sbatch` records what datatrove's SlurmPipelineExecutor submits."""
    _corpus_inputs(tmp_path / "raw")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        '#!/bin/sh\nn=$(cat "$0.count" 2>/dev/null || echo 100); n=$((n+1)); echo $n > "$0.count"\n'
        'echo "$@" >> "$0.calls"\necho "Submitted batch job $n"\n'
    )
    (bin_dir / "sbatch").chmod(0o755)
    env = {**cli_env, "PATH": f"{bin_dir}{os.pathsep}{cli_env['PATH']}"}
    out = tmp_path / "out"
    proc = run_geo_factory(
        "build-corpus",
        "raw",
        "--output",
        out,
        "--executor",
        "slurm",
        "--slurm-partition",
        "cpu",
        cwd=tmp_path,
        env=env,
    )
    assert "submitted to Slurm" in proc.stdout
    stages = ["filter", "exact_sigs", "exact_find", "minhash_sigs", "minhash_buckets", "minhash_cluster", "final"]
    for stage in stages:
        script = (out / "work" / "logs" / stage / "launch_script.slurm").read_text()
        assert "#SBATCH --partition=cpu" in script and "launch_pickled_pipeline" in script
    calls = (bin_dir / "sbatch.calls").read_text().splitlines()
    assert len([c for c in calls if "--dependency=afterok" in c]) >= len(stages) - 1  # each stage after the last

    missing = run_geo_factory(
        "build-corpus", "raw", "--output", out, "--executor", "slurm", cwd=tmp_path, env=env, check=False
    )
    assert missing.returncode == 2 and "--slurm-partition" in missing.stderr


# ---------------------------------------------------------------------------------------------
# build-sft


def test_build_sft_from_facts_and_glossary(tmp_path, cli_env) -> None:
    """Each row in each language it has text in: English tables give English pairs only, a translation column or
    a Chinese table gives Chinese ones (English is never pasted into the Chinese frame)."""
    (tmp_path / "facts.csv").write_text(
        "entity,relation,value,source,entity_zh,relation_zh\nbasalt,silica content,45-52 wt%,USGS,玄武岩,二氧化硅含量\n"
        "granite,main minerals,quartz and feldspar,,,\nbasalt,silica content,45-52 wt%,USGS,玄武岩,二氧化硅含量\n"
        "石英,莫氏硬度,7,,,\n"
    )
    (tmp_path / "terms.jsonl").write_text(
        json.dumps({"term": "tephra", "definition": "Fragments ejected by a volcano."})
        + "\n"
        + json.dumps({"term": "火山灰", "definition": "直径小于2毫米的火山碎屑。"}, ensure_ascii=False)
    )
    run_geo_factory(
        "build-sft", "--facts", "facts.csv", "terms.jsonl", "--output", "geo_sft", cwd=tmp_path, env=cli_env
    )
    rows = json.loads((tmp_path / "geo_sft" / "geo_sft.json").read_text())
    assert rows[0] == {
        "instruction": "What is the silica content of basalt?",
        "input": "",
        "output": "The silica content of basalt is 45-52 wt%.",
        "source": "facts.csv:2 (USGS)",
    }
    assert [(r["instruction"], r["output"]) for r in rows[1:]] == [
        ("玄武岩的二氧化硅含量是什么？", "玄武岩的二氧化硅含量是45-52 wt%。"),
        ("What is the main minerals of granite?", "The main minerals of granite is quartz and feldspar."),
        ("石英的莫氏硬度是什么？", "石英的莫氏硬度是7。"),
        ("What does the geoscience term “tephra” mean?", "Fragments ejected by a volcano."),
        ("请解释地学术语“火山灰”。", "直径小于2毫米的火山碎屑。"),
    ]
    assert {r["source"] for r in rows} == {
        "facts.csv:2 (USGS)",  # the file's lines, as an editor shows them (the header is line 1)
        "facts.csv:3",
        "facts.csv:5",
        "terms.jsonl:1",
        "terms.jsonl:2",
    }
    summary = json.loads((tmp_path / "geo_sft" / "build_sft.json").read_text())
    assert summary["duplicates_removed"] == 2
    assert summary["rows_without_text_in"] == {"en": 2, "zh": 2}
    info = json.loads((tmp_path / "geo_sft" / "dataset_info.json").read_text())
    assert info["geo_sft"]["file_name"] == "geo_sft.json"

    (tmp_path / "bad.csv").write_text("\ufeffname,value\nx,1\n", encoding="utf-8")  # a BOM is no part of a name
    bad = run_geo_factory("build-sft", "--facts", "bad.csv", "--output", "o", cwd=tmp_path, env=cli_env, check=False)
    assert bad.returncode == 2 and "bad.csv, line 2: " in bad.stderr and "has name, value." in bad.stderr
    assert "Traceback" not in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_build_sft_teacher_retries_counts_and_resumes(tmp_path, tiny_model, cli_env) -> None:
    """The tiny model serves as the teacher: its replies are not the JSON asked for, so each is retried, then
    counted; the request budget stops the run, and the next run resumes where it stopped."""
    work = workdir(tmp_path, tiny_model)
    port = _free_port()
    env = {**cli_env, "API_PORT": str(port), "API_HOST": "127.0.0.1", "MY_TEACHER_KEY": "sk-test-secret-123"}
    (work / "api.yaml").write_text("model_name_or_path: models/tiny-mistral\ntemplate: mistral\n")
    server = subprocess.Popen(
        [CLI, "api", "api.yaml"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("llamafactory-cli api did not start")
        (work / "doc.txt").write_text("\n\n".join(GEO_DOCS[:3]))
        (work / "doc.jsonl").write_text(json.dumps({"text": GEO_DOCS[3]}) + "\n")
        args = [
            "build-sft",
            "--documents",
            "doc.txt",
            "doc.jsonl",
            "--output",
            "teach",
            "--teacher-api",
            f"http://127.0.0.1:{port}/v1",
            "--teacher-model",
            "tiny",
            "--api-key-env",
            "MY_TEACHER_KEY",
            "--max-retries",
            "1",
            "--max-tokens",
            "8",
        ]
        first = run_geo_factory(*args, "--max-requests", "3", cwd=work, env=env)
        teacher = json.loads((work / "teach" / "build_sft.json").read_text())["teacher"]
        assert teacher["requests"] == 3 and teacher["malformed"] == 1 and teacher["pending"] == 1, teacher
        run_geo_factory(*args, cwd=work, env=env)
        teacher = json.loads((work / "teach" / "build_sft.json").read_text())["teacher"]
        assert teacher["requests"] == 2 and teacher["malformed"] == 2 and teacher["pending"] == 0, teacher
        state = [json.loads(x) for x in (work / "teach" / "teacher_state.jsonl").read_text().splitlines()]
        assert [r["passage_id"] for r in state] == ["doc.txt:0:0", "doc.jsonl:0:0"]
        assert all(r["attempts"] == 2 and r["pair"] is None for r in state)
        written = "".join(p.read_text() for p in (work / "teach").iterdir()) + first.stdout + first.stderr
        assert "sk-test-secret-123" not in written
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
