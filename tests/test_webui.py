"""LlamaBoard (``llamafactory-cli webui``) with geo-factory, driven in a real headless Chromium as a user clicks it.

One ``llamafactory-cli webui`` on 127.0.0.1 serves the whole module, in a fresh working directory with the tiny
model as a custom model path; the tests run in order on one page: the stage list and the registry datasets, a
refused share sum, a TSPT run to the end, a token mixture in the pt and sft previews (refused in dpo), in-training harness tasks in the
sft preview (a wrong name refused), a GeoBench
evaluation with an lm-evaluation-harness task beside it. Chromium comes from the system packages (Debian
``chromium``; ``scripts/setup.sh`` installs it where it can) and Playwright drives it without downloading a browser.
Screenshots go to the test's temporary folder and, when ``GEO_FACTORY_ARTIFACTS`` is set, there as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import CLI, workdir


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FIXTURES = Path(__file__).parent / "fixtures" / "geobench"
HARNESS_TASKS = Path(__file__).parent / "fixtures" / "lm_eval"  # task yamls whose data paths start lm_eval_tasks/
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian/Ubuntu: apt-get install chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
expect = sync_api.expect

STAGE1 = {"dataset": ["general_corpus_demo", "geo_corpus_demo"], "mix": "0.7,0.3", "tokens": "512"}
STAGE2 = {"dataset": ["geo_corpus_demo", "general_corpus_demo"], "mix": "0.8,0.2", "tokens": "512"}
RUN = "tspt_board"  # the Train tab's output dir: saves/Custom/lora/tspt_board


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _webui(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``llamafactory-cli webui`` in ``work`` on a free port of 127.0.0.1, once it answers."""
    port = _free_port()
    env = {
        **env,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "BROWSER": "true",  # LlamaBoard asks the OS to open a browser: let that be a no-op
    }
    with open(work / "webui.log", "w") as log:
        server = subprocess.Popen([CLI, "webui"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            return server, url
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"llamafactory-cli webui did not start:\n{(work / 'webui.log').read_text()[-3000:]}")
            time.sleep(0.5)


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=60)


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, cli_env: dict[str, str]):
    """LlamaBoard in a user's fresh working directory (no data/: the registry alone)."""
    work = workdir(tmp_path_factory.mktemp("board"), tiny_model)
    server, url = _webui(work, cli_env)
    yield url, work
    _stop(server)


@pytest.fixture(scope="module")
def page(board, tmp_path_factory: pytest.TempPathFactory):
    """One browser page on the board, with the tiny model picked as a custom model; a screenshot after each test."""
    url, work = board
    shots = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("GEO_FACTORY_ARTIFACTS"):
        shots.append(Path(os.environ["GEO_FACTORY_ARTIFACTS"]) / "webui")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(120_000)  # generous: the CI machine runs another test process beside this one
        expect.set_options(timeout=120_000)  # and for `expect`, whose own default of 5 s a loaded machine missed
        page.goto(url, wait_until="domcontentloaded")
        expect(page.get_by_label("Language", exact=True)).to_have_value("en")  # LlamaBoard's own load has run
        _choose(page, page.get_by_label("Model name", exact=True), "Custom")
        _fill_until_kept(page, page.get_by_label("Model path"), str(work / "models" / "tiny-mistral"))
        page.shots = shots
        yield page
        browser.close()


@pytest.fixture(autouse=True)
def _screenshot(request, page):
    yield
    for folder in page.shots:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / f"{request.node.name}.png", full_page=True)


def _fill_until_kept(page, box, value: str) -> None:
    """Fill a box that an event still in flight may overwrite: choosing a model name makes LlamaBoard set the model
    path (to "" for Custom), and on a loaded machine that reply came after the fill and emptied it."""
    for _ in range(30):
        if box.input_value() != value:
            box.fill(value)
        page.wait_for_timeout(1000)
        if box.input_value() == value:
            page.wait_for_timeout(2000)
            if box.input_value() == value:
                return
    raise AssertionError(f"the page keeps resetting the box to {box.input_value()!r}, not {value!r}")


def _choose(page, box, option: str) -> None:
    """Pick an option of a gradio dropdown by typing its name and clicking it in the list."""
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()


def _pick(box, names: list[str]) -> None:
    """Type names into a multiselect dropdown's box, each followed by Enter."""
    for name in names:
        box.click()
        box.fill(name)
        box.press("Enter")


def _number(page, label: str, value: int) -> None:
    box = page.get_by_label(f"number input for {label}").first
    box.fill(str(value))
    box.press("Enter")


def _tspt_settings(page, stage1_mix: str) -> None:
    for stage, settings in ((1, {**STAGE1, "mix": stage1_mix}), (2, STAGE2)):
        _pick(page.locator(f"#geo_tspt_stage{stage}_dataset input"), settings["dataset"])
        page.locator(f"#geo_tspt_stage{stage}_mix textarea").fill(settings["mix"])
        page.locator(f"#geo_tspt_stage{stage}_tokens textarea").fill(settings["tokens"])
    page.locator("#geo_tspt_stage2_learning_rate textarea").fill("5e-4")


def test_stage_list_registry_and_labels(page) -> None:
    _choose(page, page.get_by_label("Stage", exact=True), "TSPT (JiuZhou)")
    expect(page.get_by_text("Stage 1 token shares", exact=True)).to_be_visible()
    page.locator("#geo_tspt_stage1_dataset input").click()  # the picker lists the registry (no data/ here)
    for name in ("geo_corpus_demo", "general_corpus_demo", "geosignal"):
        expect(page.get_by_role("option", name=name, exact=True)).to_be_visible()
    page.keyboard.press("Escape")

    _choose(page, page.get_by_label("Language", exact=True), "zh")
    expect(page.get_by_text("阶段 1 token 比例", exact=True).first).to_be_visible()
    expect(page.get_by_text("训练中的 GeoBench 评测").first).to_be_visible()
    _choose(page, page.get_by_label("语言", exact=True), "en")
    expect(page.get_by_text("Stage 1 token shares", exact=True).first).to_be_visible()


def test_bad_share_sum_shows_the_yaml_message_and_writes_nothing(page, board) -> None:
    _, work = board
    _tspt_settings(page, stage1_mix="0.5,0.6")
    _number(page, "Cutoff length", 128)  # a few steps of the tiny model: 128 x 2 x 1 tokens a step, 2 steps a stage
    _number(page, "Gradient accumulation", 1)
    _choose(page, page.get_by_label("Compute type", exact=True), "fp32")
    page.get_by_text("Extra configurations").click()
    _number(page, "Logging steps", 1)
    page.get_by_label("Extra arguments").filter(visible=True).fill(
        '{"optim": "adamw_torch", "preprocessing_num_workers": null}'
    )
    output_dir = page.get_by_label("Output dir", exact=True)
    output_dir.fill(RUN)
    output_dir.press("Enter")
    page.get_by_role("button", name="Start", exact=True).click()
    message = "`tspt_stage1_mix: 0.5,0.6` must be positive shares that sum to 1 (they sum to 1.1)."
    expect(page.get_by_text(message).first).to_be_visible()
    assert not (work / "saves").exists(), sorted(str(p) for p in (work / "saves").rglob("*"))


def test_tspt_trains_and_plots_both_stages(page, board) -> None:
    _, work = board
    page.locator("#geo_tspt_stage1_mix textarea").fill(STAGE1["mix"])
    page.get_by_role("button", name="Preview command").click()
    preview = page.locator("code").filter(has_text="llamafactory-cli train").first
    for line in (
        "--stage tspt",
        "--tspt_stage1_mix 0.7,0.3",
        "--tspt_stage2_dataset geo_corpus_demo,general_corpus_demo",
    ):
        expect(preview).to_contain_text(line)
    assert not re.search(r"--dataset\s", preview.inner_text())  # TSPT names its data per stage

    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_text("Finished.").first).to_be_visible(timeout=300_000)

    output = work / "saves" / "Custom" / "lora" / RUN
    config = yaml.safe_load((output / "training_args.yaml").read_text())  # what LlamaBoard ran
    assert config["stage"] == "tspt" and "dataset" not in config
    assert (config["tspt_stage1_mix"], config["tspt_stage2_tokens"]) == ("0.7,0.3", "512")
    report = json.loads((output / "tspt_report.json").read_text())
    assert report["finished"]
    for stage, settings in (("stage1", STAGE1), ("stage2", STAGE2)):
        assert list(report["stages"][stage]["datasets"]) == settings["dataset"], report["stages"][stage]
        assert (output / stage / "trainer_log.jsonl").is_file()
    assert (output / "adapter_model.safetensors").is_file() and (output / "training_loss.png").is_file()
    loss = page.locator(".block").filter(has=page.get_by_text("Loss", exact=True)).last.locator("img")
    expect(loss).to_be_visible()  # the figure of both stages (matplotlib, drawn to an image)
    assert loss.evaluate("img => img.naturalWidth") > 300


def test_token_mixture_in_the_yaml_of_pt_and_sft_refused_in_dpo(page) -> None:
    stage_box, mix_row = page.get_by_label("Stage", exact=True), page.locator("#geo_mix_row")
    output_dir = page.get_by_label("Output dir", exact=True)
    output_dir.fill("mix_board")  # not the finished TSPT run's folder, which the parser would refuse to train into
    output_dir.press("Enter")
    _choose(page, page.get_by_label("Compute type", exact=True), "fp32")  # bf16 needs a GPU: the parser says so
    for stage, datasets in (
        ("Pre-Training", ["general_corpus_demo", "geo_corpus_demo"]),
        ("TSPT (JiuZhou)", None),  # mixes per stage: the row is hidden
        ("Supervised Fine-Tuning", ["general_sft_demo", "geosignal_demo"]),
        ("DPO", ["dpo_en_demo", "dpo_zh_demo"]),
    ):
        _choose(page, stage_box, stage)
        if datasets is None:
            expect(mix_row).to_be_hidden()
            continue
        expect(mix_row).to_be_visible()
        page.wait_for_timeout(1000)  # the stage's own reply empties the dataset picker: let it land first
        # a handle: the box's accessible name takes in what is typed, so its label no longer finds it
        _pick(page.get_by_label("Dataset", exact=True).filter(visible=True).element_handle(), datasets)
        _choose(page, page.locator("#geo_mix_strategy input"), "interleave_tokens")
        page.locator("#geo_interleave_probs textarea").fill("0.7,0.3")
        page.get_by_role("button", name="Preview command").click()
        if stage == "DPO":  # the command's own refusal, before anything runs
            message = "`mix_strategy: interleave_tokens` is supported in `stage: pt` and `stage: sft`, not `dpo`"
            expect(page.get_by_text(message).first).to_be_visible()
            continue
        preview = page.locator("code").filter(has_text="llamafactory-cli train").first
        for line in (
            f"--dataset {','.join(datasets)}",
            "--mix_strategy interleave_tokens",
            "--interleave_probs 0.7,0.3",
        ):
            expect(preview).to_contain_text(line)


def test_in_training_harness_tasks_in_the_yaml_and_a_wrong_name_refused(page, board) -> None:
    """The Train tab takes `lm_eval:` tasks for the in-training evaluation, as the yaml key does; the preview parses
    what would run, so an unknown name is the command's own one line (closest name included)."""
    _, work = board
    shutil.copytree(HARNESS_TASKS, work / "lm_eval_tasks", dirs_exist_ok=True)
    output_dir = page.get_by_label("Output dir", exact=True)
    output_dir.fill("harness_board")
    output_dir.press("Enter")
    _choose(page, page.get_by_label("Compute type", exact=True), "fp32")  # bf16 needs a GPU: the parser says so
    _choose(page, page.get_by_label("Stage", exact=True), "Supervised Fine-Tuning")
    page.wait_for_timeout(1000)  # the stage's own reply empties the dataset picker: let it land first
    _pick(page.get_by_label("Dataset", exact=True).filter(visible=True).element_handle(), ["geosignal_demo"])
    _choose(page, page.locator("#geo_mix_strategy input"), "concat")
    page.locator("#geo_interleave_probs textarea").fill("")  # the mixture test's shares: concat takes none
    page.get_by_text("GeoBench during training").click()
    steps = page.locator("#geo_geobench_eval_steps input")
    steps.fill("1")
    steps.press("Enter")
    page.locator("#geo_geobench_task_dir textarea").fill(str(FIXTURES / "k2"))
    page.locator("#geo_geobench_lm_eval_include_path textarea").fill("lm_eval_tasks")
    harness = page.locator("#geo_geobench_lm_eval textarea")
    harness.fill("geo_rocks_mx")
    page.get_by_role("button", name="Preview command").click()
    message = "Unknown lm-evaluation-harness task `lm_eval:geo_rocks_mx` in `geobench_tasks`"
    expect(page.get_by_text(message).first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Did you mean: lm_eval:geo_rocks_mc").first).to_be_visible()

    harness.fill("geo_rocks_mc")
    page.get_by_role("button", name="Preview command").click()
    preview = page.locator("code").filter(has_text="llamafactory-cli train").first
    expect(preview).to_contain_text("--geobench_lm_eval_include_path lm_eval_tasks", timeout=60_000)
    tasks = re.search(r"--geobench_tasks (\S+)", preview.inner_text()).group(1).split(",")
    assert tasks[-1] == "lm_eval:geo_rocks_mc" and len(tasks) == 2, tasks  # after the picked suite


def test_geobench_panel_runs_the_eval_and_shows_results(page, board) -> None:
    _, work = board
    shutil.copytree(HARNESS_TASKS, work / "lm_eval_tasks", dirs_exist_ok=True)
    page.get_by_role("tab", name="Evaluate & Predict").click()
    expect(page.get_by_text("GeoBench and general benchmarks (llamafactory-cli eval)")).to_be_visible()
    tasks = page.locator("#geo_bench_task input")  # the newer benchmarks and their generated-answer protocols
    tasks.click()
    for typed, option in (
        ("formationeval", "formationeval_gen: FormationEval, the authors' generative protocol"),
        ("earth_iron", "earth_iron"),
        ("climaqa_gold_mcq", "climaqa_gold_mcq_gen: ClimaQA Gold, multiple choice (the authors' prompt, generated)"),
    ):
        tasks.fill(typed)
        expect(page.get_by_role("option", name=option, exact=True)).to_be_visible()
    tasks.fill("")
    page.keyboard.press("Escape")
    page.locator("#geo_bench_task_dir textarea").fill(str(FIXTURES / "k2"))
    page.locator("#geo_bench_n_shot input[type=number]").fill("2")
    page.locator("#geo_bench_save_dir textarea").fill("geobench_board")
    page.locator("#geo_bench_lm_eval textarea").fill("geo_rocks_mc")
    page.locator("#geo_bench_lm_eval_include_path textarea").fill("lm_eval_tasks")
    page.locator("#geo_bench_judge_api_base textarea").fill("http://127.0.0.1:9/v1")
    page.locator("#geo_bench_judge_model textarea").fill("judge")
    page.locator("#geo_bench_preview_btn").click()
    table = page.locator("#geo_bench_output")
    for line in (
        "task: geobench,lm_eval:geo_rocks_mc",
        "lm_eval_include_path: lm_eval_tasks",
        "judge_api_base: http://127.0.0.1:9/v1",
        "judge_model: judge",
    ):
        expect(table).to_contain_text(line)
    for judge in ("api_base", "model"):  # no judge in the run
        page.locator(f"#geo_bench_judge_{judge} textarea").fill("")

    page.locator("#geo_bench_start_btn").click()
    expect(table).to_contain_text("Finished.", timeout=300_000)

    results = json.loads((work / "saves" / "Custom" / "lora" / "geobench_board" / "results.json").read_text())
    shown = table.inner_text()
    for name in ("geobench_npee", "geobench_npee_tf", "geobench_apstudy"):
        row = next(line for line in shown.splitlines() if line.split()[:2] == [name, "accuracy"])
        assert float(row.split()[2]) == pytest.approx(results["tasks"][name]["accuracy"], abs=0.005), row
    harness = results["tasks"]["lm_eval:geo_rocks_mc"]["metrics"]  # beside the native tasks, in the same table
    row = next(line for line in shown.splitlines() if line.split()[:2] == ["lm_eval:geo_rocks_mc", "acc,none"])
    assert row.split()[2] == f"{harness['acc,none']:.2f}", row
    chart = page.locator("#geo_bench_chart img")
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.naturalWidth") > 300


def test_disabled_gives_stock_llamaboard(board, cli_env: dict[str, str], tmp_path: Path) -> None:
    url, _ = board
    server, stock_url = _webui(tmp_path, {**cli_env, "GEO_FACTORY_DISABLE": "1"})
    try:
        configs = [json.load(urllib.request.urlopen(f"{u}config", timeout=60)) for u in (url, stock_url)]
    finally:
        _stop(server)
    for config, patched in zip(configs, (True, False)):
        props = [component.get("props", {}) for component in config["components"]]
        choices = [str(choice) for p in props for choice in p.get("choices") or []]
        assert any("TSPT (JiuZhou)" in choice for choice in choices) == patched
        assert any(str(p.get("elem_id")).startswith("geo_") for p in props) == patched
