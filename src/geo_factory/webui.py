"""LlamaBoard (``llamafactory-cli webui``) with geo-factory: TSPT in the Train tab, the dataset registry in the
pickers, GeoBench during training, a token mixture's loss per dataset in the loss plot, and a panel for
``llamafactory-cli eval``.

Nothing here runs a job itself: LlamaBoard still launches ``llamafactory-cli train`` with the yaml it builds (now
with the ``tspt_*`` and ``geobench_*`` keys), and the evaluation panel launches ``llamafactory-cli eval``, so the
browser and the command line share one code path, one validation and one set of messages. The hooks in
:mod:`geo_factory.hooks` call the functions below; this module imports gradio, so only LlamaBoard imports it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import fields
from pathlib import Path
from subprocess import PIPE, STDOUT, Popen
from typing import TYPE_CHECKING, Any, get_args

import gradio as gr
import yaml
from gradio.context import get_render_context
from llamafactory.extras.constants import DATA_CONFIG, STAGES_USE_PAIR_DATA, TRAINER_LOG, TRAINING_STAGES
from llamafactory.webui.common import (
    DEFAULT_CACHE_DIR,
    DEFAULT_DATA_DIR,
    _clean_cmd,
    abort_process,
    get_save_dir,
    load_config,
)
from llamafactory.webui.locales import ALERTS

from .datasets import merged_registry, registry_dir
from .eval.harness_tasks import PREFIX
from .eval.tasks import SUITES, TASKS
from .hparams.checks import split
from .hparams.data_args import TOKEN_MIX, GeoDataArguments
from .hparams.tspt_args import STAGES


if TYPE_CHECKING:
    from gradio.components import Component
    from llamafactory.webui.engine import Engine
    from llamafactory.webui.runner import Runner


TSPT_STAGE = "TSPT (JiuZhou)"
TSPT = "tspt"
GEOBENCH_STAGES = ("pt", "sft", TSPT)  # the stages whose workflows run the in-training GeoBench callback
MIX_STRATEGIES = get_args(next(f.type for f in fields(GeoDataArguments) if f.name == "mix_strategy"))
EVAL_CONFIG = "geobench_eval.yaml"  # in LlamaBoard's cache folder: the yaml the panel hands to `llamafactory-cli eval`
_ERROR = re.compile(r"^(\w+(Error|Exception)\b|llamafactory-cli eval: error: )")  # a traceback's or the command's
_TQDM = re.compile(r"([\w\-]+(?: \(judge\))?): +(\d+)%\|[^|\r\n]*\| *(\d+)/(\d+)")


def add_tspt_stage() -> None:
    """One dict serves the stage list, the runner and the dataset filter: TSPT goes in once, last."""
    TRAINING_STAGES[TSPT_STAGE] = TSPT


def _stage(data: dict[Component, Any], runner: Runner) -> str:
    return TRAINING_STAGES.get(data[runner.manager.get_elem_by_id("train.training_stage")], "")


# ---------------------------------------------------------------------------------------------
# Dataset pickers and the training monitor (llamafactory.webui.control)


def list_datasets(list_datasets: Callable, dataset_dir: str | None = None, training_stage: str | None = None):
    """The names a yaml can use from this ``dataset_dir``: the user's ``dataset_info.json`` over the registry."""
    dataset_dir = dataset_dir or DEFAULT_DATA_DIR
    stock = (dataset_dir,) if training_stage is None else (dataset_dir, training_stage)
    if dataset_dir == "ONLINE" or dataset_dir.startswith("REMOTE:"):
        return list_datasets(*stock)
    try:
        info, origin = merged_registry(dataset_dir)
    except ValueError as err:  # a malformed user file: say so, as the yaml path would
        gr.Warning(str(err))
        return list_datasets(*stock)

    ranking = TRAINING_STAGES.get(training_stage) in STAGES_USE_PAIR_DATA
    geo = registry_dir() / DATA_CONFIG
    names = [n for n, entry in info.items() if isinstance(entry, dict) and entry.get("ranking", False) == ranking]
    return gr.Dropdown(choices=sorted(names, key=lambda name: origin[name] == geo))  # the user's first


def change_stage(change_stage: Callable, training_stage: str) -> tuple[gr.Dropdown, bool]:
    """TSPT names its datasets per stage (the general picker is off) and always packs."""
    datasets, packing = change_stage(training_stage)
    tspt = TRAINING_STAGES.get(training_stage) == TSPT
    return gr.Dropdown(value=datasets, interactive=not tspt), packing or tspt


def get_trainer_info(get_trainer_info: Callable, lang: str, output_path: str, do_train: bool):
    """A TSPT run logs per stage (``stage1/``, ``stage2/``): progress of the running stage, loss of both."""
    running_log, progress, info = get_trainer_info(lang, output_path, do_train)
    logs = _stage_logs(Path(output_path)) if do_train else {}
    if logs and not (Path(output_path) / TRAINER_LOG).is_file():
        stage, rows = max(logs.items())
        last = rows[-1]
        label = "TSPT stage {}: {:d}/{:d}: {} < {}".format(
            stage, last["current_steps"], last["total_steps"], last["elapsed_time"], last["remaining_time"]
        )
        progress = gr.Slider(label=label, value=last["percentage"], visible=True)
        info["loss_viewer"] = gr.Plot(_loss_figure(logs))
    elif "loss_viewer" in info:  # a token mixture logs each dataset's loss: one curve per dataset
        rows = _read_log(Path(output_path) / TRAINER_LOG)
        if any(key.startswith("loss_") for row in rows for key in row):
            info["loss_viewer"] = gr.Plot(source_loss_figure(rows))
    return running_log, progress, info


def source_loss_figure(rows: list[dict[str, Any]]):
    """The run's loss and each dataset's (``loss_<dataset>``, :mod:`geo_factory.source_loss`), smoothed as
    LLaMA-Factory's plot draws its one curve."""
    import matplotlib.pyplot as plt
    from llamafactory.extras.ploting import smooth

    plt.close("all")  # LlamaBoard draws one figure per refresh
    plt.switch_backend("agg")
    fig, ax = plt.subplots()
    names = list(dict.fromkeys(key[5:] for row in rows for key in row if key.startswith("loss_")))
    for key, label in (("loss", "all datasets"), *((f"loss_{name}", name) for name in names)):
        points = [(row["current_steps"], row[key]) for row in rows if row.get(key) is not None]
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, smooth(list(losses)), label=label, **({"color": "black"} if key == "loss" else {}))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return fig


def _loss_figure(logs: dict[int, list[dict[str, Any]]]):
    """The run's own loss plot (:func:`geo_factory.tspt.loss_figure`), from the stages' trainer logs as they grow."""
    from .tspt import loss_figure

    curves = {}
    for stage, rows in logs.items():
        logged = [row for row in rows if row.get("loss") is not None]
        curves[stage] = (
            [row["current_steps"] for row in logged],
            [row["loss"] for row in logged],
            rows[-1]["total_steps"],
        )
    return loss_figure(curves)


def _stage_logs(output_dir: Path) -> dict[int, list[dict[str, Any]]]:
    logs = {}
    for stage in STAGES:
        rows = _read_log(output_dir / f"stage{stage}" / TRAINER_LOG)
        if rows:
            logs[stage] = rows
    return logs


def _read_log(path: Path) -> list[dict[str, Any]]:
    """A trainer log's complete lines (the trainer appends from a thread)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n")[:-1] if line.strip()]


# ---------------------------------------------------------------------------------------------
# The runner: validation and arguments of a training run (llamafactory.webui.runner.Runner)


def initialize(initialize: Callable, runner: Runner, data: dict, do_train: bool, from_preview: bool) -> str:
    """LlamaBoard's checks, then the yaml path's own parsing of what would run: its message, before any write."""
    if not do_train:
        return initialize(runner, data, do_train, from_preview)
    stage = _stage(data, runner)
    if stage == TSPT:  # LlamaBoard insists on `dataset`, which TSPT replaces by its stage datasets
        data = {**data, runner.manager.get_elem_by_id("train.dataset"): [TSPT]}
    error = initialize(runner, data, do_train, from_preview)
    if error:
        return error
    get = lambda elem_id: data[runner.manager.get_elem_by_id(elem_id)]  # noqa: E731
    if get("train.geobench_eval_steps") and stage not in GEOBENCH_STAGES:
        return f"`geobench_eval_steps` runs with the stages {', '.join(GEOBENCH_STAGES)}, not `{stage}`."
    return check_train_args(runner._parse_train_args(data))


def check_train_args(args: dict[str, Any]) -> str:
    """Parse the yaml LlamaBoard would write the way ``llamafactory-cli train`` does; the error message, or ''."""
    from llamafactory.hparams.parser import _parse_train_args

    try:
        _parse_train_args(yaml.safe_load(yaml.safe_dump(_clean_cmd(args))))
    except SystemExit:  # a finished TSPT run: the command itself says where its result is
        return ""
    except (ValueError, TypeError) as err:
        return str(err)
    return ""


def parse_train_args(parse_train_args: Callable, runner: Runner, data: dict) -> dict[str, Any]:
    """LlamaBoard's arguments plus the TSPT and in-training GeoBench keys, as a yaml names them."""
    args = parse_train_args(runner, data)
    get = lambda elem_id: data[runner.manager.get_elem_by_id(elem_id)]  # noqa: E731
    if args["stage"] == TSPT:
        # each stage's steps follow from its budget, and its data from the stage's mixture
        for key in ("dataset", "packing", "num_train_epochs", "max_samples"):
            args.pop(key, None)
        for stage in STAGES:
            args[f"tspt_stage{stage}_dataset"] = ",".join(get(f"train.tspt_stage{stage}_dataset")) or None
            for name in ("mix", "tokens", "learning_rate", "warmup_ratio"):
                args[f"tspt_stage{stage}_{name}"] = _text(get(f"train.tspt_stage{stage}_{name}"))
        if get("train.tspt_vocab_corpus"):
            args["tspt_vocab_corpus"] = ",".join(get("train.tspt_vocab_corpus"))
            args["tspt_vocab_size"] = _whole(get("train.tspt_vocab_size"))
            args["tspt_vocab_init"] = get("train.tspt_vocab_init")
    elif get("train.mix_strategy") != "concat" or _text(get("train.interleave_probs")):
        # LLaMA-Factory's own keys; the parser refuses a strategy the stage does not take, in the command's words
        args["mix_strategy"] = get("train.mix_strategy")
        args["interleave_probs"] = _text(get("train.interleave_probs"))
    if get("train.geobench_eval_steps"):
        args["geobench_eval_steps"] = int(get("train.geobench_eval_steps"))
        args["geobench_tasks"] = ",".join(_tasks(get("train.geobench_tasks"), get("train.geobench_lm_eval"))) or None
        args["geobench_lm_eval_include_path"] = _text(get("train.geobench_lm_eval_include_path"))
        args["geobench_task_dir"] = _text(get("train.geobench_task_dir"))
        args["geobench_n_shot"] = int(get("train.geobench_n_shot"))
        args["geobench_max_samples"] = _whole(get("train.geobench_max_samples"))
    return args


def monitor(monitor: Callable, runner: Runner) -> Generator[dict[Component, Any], None, None]:
    """LlamaBoard's monitor, and one last look at the logs once the run has ended (a short stage may end between
    two looks, and its loss would be missing from the plot)."""
    get = lambda elem_id: runner.running_data[runner.manager.get_elem_by_id(elem_id)]  # noqa: E731
    do_train, lang = runner.do_train, get("top.lang")
    if do_train:
        output_path = get_save_dir(get("top.model_name"), get("top.finetuning_type"), get("train.output_dir"))
    yield from monitor(runner)
    if do_train:
        from llamafactory.webui.control import get_trainer_info as trainer_info  # this module's, once patched

        info = trainer_info(lang, output_path, do_train)[2]
        if "loss_viewer" in info:
            yield {runner.manager.get_elem_by_id("train.loss_viewer"): info["loss_viewer"]}


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value is not None else None


def _whole(value: Any) -> Any:
    """A count typed into a text box, as the integer a yaml would hold; anything else is left for the parser to refuse."""
    text = _text(value)
    return int(text) if text is not None and text.isdigit() else text


# ---------------------------------------------------------------------------------------------
# The Train tab (llamafactory.webui.components.train)


def create_train_tab(create_train_tab: Callable, engine: Engine) -> dict[str, Component]:
    """LlamaBoard's Train tab with the dataset mixture and the TSPT settings under the stage row, GeoBench under the
    extra settings."""
    tab = get_render_context()
    start = len(tab.children)
    with gr.Row() as mix_row:  # every stage but TSPT, which mixes per stage
        mix = {
            "mix_row": mix_row,
            "mix_strategy": gr.Dropdown(choices=list(MIX_STRATEGIES), value="concat", scale=1),
            "interleave_probs": gr.Textbox(scale=2),
        }
    with gr.Accordion(open=True, visible=False) as tspt_tab:
        tspt = {"tspt_tab": tspt_tab}
        for stage in STAGES:
            with gr.Row():
                tspt[f"tspt_stage{stage}_dataset"] = gr.Dropdown(multiselect=True, allow_custom_value=True, scale=4)
                tspt[f"tspt_stage{stage}_mix"] = gr.Textbox(scale=2)
                tspt[f"tspt_stage{stage}_tokens"] = gr.Textbox(scale=1)
                tspt[f"tspt_stage{stage}_learning_rate"] = gr.Textbox(scale=1)
                tspt[f"tspt_stage{stage}_warmup_ratio"] = gr.Textbox(scale=1)
        with gr.Row():
            tspt["tspt_vocab_corpus"] = gr.Dropdown(multiselect=True, allow_custom_value=True, scale=4)
            tspt["tspt_vocab_size"] = gr.Textbox(scale=1)
            tspt["tspt_vocab_init"] = gr.Dropdown(choices=["prepared", "mean", "random"], value="prepared", scale=1)

    with gr.Accordion(open=False) as geobench_tab:
        objective = [name for name, task in TASKS.items() if task.objective and task.kind != "answer"]  # likelihood
        suites = [name for name, members in SUITES.items() if all(m in objective for m in members)]
        geobench = {"geobench_tab": geobench_tab}
        with gr.Row():
            geobench["geobench_eval_steps"] = gr.Number(value=0, precision=0, minimum=0)
            geobench["geobench_tasks"] = gr.Dropdown(
                choices=_task_choices([*suites, *objective]), value=suites[:1], multiselect=True, scale=2
            )
            geobench["geobench_task_dir"] = gr.Textbox(scale=2)
            geobench["geobench_n_shot"] = gr.Slider(minimum=0, maximum=25, value=5, step=1)
            geobench["geobench_max_samples"] = gr.Textbox()
        with gr.Row():  # as the eval panel's: names, each run as lm_eval:NAME, and the user's own task folder
            geobench["geobench_lm_eval"] = gr.Textbox(scale=3)
            geobench["geobench_lm_eval_include_path"] = gr.Textbox(scale=2)

    ours = _with_ids({**mix, **tspt, **geobench})
    inputs = {elem for name, elem in ours.items() if not name.endswith(("_tab", "_row"))}
    base = engine.manager.get_base_elems
    engine.manager.get_base_elems = lambda: base() | inputs  # the tab's buttons send ours along with its own
    try:
        elem_dict = create_train_tab(engine)
    finally:
        del engine.manager.get_base_elems

    # layout: the mixture and TSPT right under the stage row, GeoBench right after the extra settings
    children = tab.children
    del children[start : start + 3]
    below_stage = children.index(_in(tab, elem_dict["training_stage"])) + 1
    children[below_stage:below_stage] = [mix_row, tspt_tab]
    children.insert(children.index(_in(tab, elem_dict["extra_tab"])) + 1, geobench_tab)

    stage, dataset_dir = elem_dict["training_stage"], elem_dict["dataset_dir"]
    stage.change(
        lambda s: (
            gr.Row(visible=TRAINING_STAGES.get(s) != TSPT),
            gr.Accordion(visible=TRAINING_STAGES.get(s) == TSPT),
        ),
        [stage],
        [mix_row, tspt_tab],
        queue=False,
    )
    from llamafactory.webui.control import list_datasets as picker  # patched: the registry too

    for name in ("tspt_stage1_dataset", "tspt_stage2_dataset", "tspt_vocab_corpus"):
        ours[name].focus(picker, [dataset_dir, stage], [ours[name]], queue=False)
    return {**elem_dict, **ours}


def _with_ids(elems: dict[str, Component]) -> dict[str, Component]:
    """HTML ids ``geo_<name>``: stable handles for styles and browser tests."""
    for name, elem in elems.items():
        elem.elem_id = f"geo_{name}"
    return elems


def _in(tab, block):
    """The child of ``tab`` that holds ``block`` (gradio wraps form fields in a Form inside their Row)."""
    while block.parent is not tab:
        block = block.parent
    return block


# ---------------------------------------------------------------------------------------------
# The evaluation panel (llamafactory.webui.components.eval)


def _task_choices(names: list[str], tasks: dict | None = None) -> list[tuple[str, str]]:
    tasks = TASKS if tasks is None else tasks
    return [(f"{name}: {tasks[name].description}" if name in tasks else name, name) for name in names]


def tasks_in(task_dir: str | None) -> gr.Dropdown:
    """The eval panel's task list for a folder: the built-in tasks and those of its eval_info.json, if any."""
    from .eval.plan import registry

    try:
        tasks = registry((task_dir or "").strip() or None)
    except ValueError as err:  # a broken eval_info.json: said when the run starts, with the file and key
        gr.Warning(str(err))
        tasks = TASKS
    return gr.Dropdown(choices=_task_choices([*SUITES, *tasks], tasks))


def create_eval_tab(create_eval_tab: Callable, engine: Engine) -> dict[str, Component]:
    """LlamaBoard's Evaluate & Predict tab, then GeoBench and the general benchmarks through ``llamafactory-cli eval``."""
    elem_dict = create_eval_tab(engine)
    with gr.Accordion(open=True) as bench_tab:
        with gr.Row():
            bench_task = gr.Dropdown(
                choices=_task_choices([*SUITES, *TASKS]), value=list(SUITES)[:1], multiselect=True, scale=3
            )
            bench_task_dir = gr.Textbox(scale=2)
            bench_mode = gr.Dropdown(choices=["likelihood", "generate"], value="likelihood", scale=1)
            bench_lang = gr.Dropdown(choices=["en", "zh"], value="en", scale=1)
        with gr.Row():
            bench_lm_eval = gr.Textbox(scale=3)
            bench_lm_eval_include_path = gr.Textbox(scale=2)
            bench_judge_api_base = gr.Textbox(scale=1)
            bench_judge_model = gr.Textbox(scale=1)
        with gr.Row():
            bench_n_shot = gr.Slider(minimum=0, maximum=25, value=5, step=1)
            bench_batch_size = gr.Slider(minimum=1, maximum=256, value=8, step=1)
            bench_max_samples = gr.Textbox()
            bench_save_dir = gr.Textbox(value="geobench")
            bench_overwrite = gr.Checkbox()
        with gr.Row():
            bench_preview_btn = gr.Button()
            bench_start_btn = gr.Button(variant="primary")
            bench_stop_btn = gr.Button(variant="stop")
        with gr.Row():
            bench_progress = gr.Slider(visible=False, interactive=False)
        with gr.Row():
            bench_output = gr.Markdown()
            bench_chart = gr.Image(visible=False, interactive=False, show_label=False, type="pil")

    bench_task_dir.change(tasks_in, [bench_task_dir], [bench_task], queue=False)
    ours = {
        "bench_tab": bench_tab,
        "bench_task": bench_task,
        "bench_task_dir": bench_task_dir,
        "bench_mode": bench_mode,
        "bench_lang": bench_lang,
        "bench_lm_eval": bench_lm_eval,
        "bench_lm_eval_include_path": bench_lm_eval_include_path,
        "bench_judge_api_base": bench_judge_api_base,
        "bench_judge_model": bench_judge_model,
        "bench_n_shot": bench_n_shot,
        "bench_batch_size": bench_batch_size,
        "bench_max_samples": bench_max_samples,
        "bench_save_dir": bench_save_dir,
        "bench_overwrite": bench_overwrite,
        "bench_preview_btn": bench_preview_btn,
        "bench_start_btn": bench_start_btn,
        "bench_stop_btn": bench_stop_btn,
        "bench_progress": bench_progress,
        "bench_output": bench_output,
        "bench_chart": bench_chart,
    }
    _with_ids(ours)
    engine.manager.add_elems("eval", ours)  # now, so that the runner below finds them by id
    runner = BenchRunner(engine)
    inputs = engine.manager.get_base_elems() | {
        bench_task,
        bench_task_dir,
        bench_mode,
        bench_lang,
        bench_lm_eval,
        bench_lm_eval_include_path,
        bench_judge_api_base,
        bench_judge_model,
        bench_n_shot,
        bench_batch_size,
        bench_max_samples,
        bench_save_dir,
        bench_overwrite,
    }
    bench_preview_btn.click(runner.preview, inputs, [bench_output], concurrency_limit=None)
    bench_start_btn.click(runner.run, inputs, [bench_output, bench_progress, bench_chart])
    bench_stop_btn.click(runner.stop)
    return {**elem_dict, **ours}


class BenchRunner:
    """Runs ``llamafactory-cli eval`` on a yaml built from the panel; shows its progress, then its table and chart.

    The command does all the checking and resuming: the same settings and save folder after an interrupted run
    continue it, a finished one is kept unless "overwrite" is ticked.
    """

    def __init__(self, engine: Engine) -> None:
        self.manager, self.engine = engine.manager, engine
        self.process: Popen | None = None

    def _get(self, data: dict, elem_id: str) -> Any:
        return data[self.manager.get_elem_by_id(elem_id)]

    def _args(self, data: dict) -> dict[str, Any]:
        get = lambda elem_id: self._get(data, elem_id)  # noqa: E731
        model_name, finetuning_type = get("top.model_name"), get("top.finetuning_type")
        args = {
            "model_name_or_path": get("top.model_path"),
            "cache_dir": load_config().get("cache_dir"),
            "template": get("top.template"),
            "finetuning_type": finetuning_type,
            "task": ",".join(_tasks(get("eval.bench_task"), get("eval.bench_lm_eval"))),
            "task_dir": _text(get("eval.bench_task_dir")),
            "lm_eval_include_path": _text(get("eval.bench_lm_eval_include_path")),
            "eval_mode": get("eval.bench_mode"),
            "n_shot": int(get("eval.bench_n_shot")),
            "lang": get("eval.bench_lang"),
            "batch_size": int(get("eval.bench_batch_size")),
            "max_samples": _whole(get("eval.bench_max_samples")),
            "save_dir": str(get_save_dir(model_name, finetuning_type, get("eval.bench_save_dir"))),
            "overwrite_save_dir": get("eval.bench_overwrite") or None,
            "judge_api_base": _text(get("eval.bench_judge_api_base")),  # its key: OPENAI_API_KEY in the board's env
            "judge_model": _text(get("eval.bench_judge_model")),
        }
        checkpoints = get("top.checkpoint_path")
        if checkpoints and isinstance(checkpoints, list):  # adapters
            args["adapter_name_or_path"] = ",".join(get_save_dir(model_name, finetuning_type, c) for c in checkpoints)
        elif checkpoints:  # a full or freeze checkpoint
            args["model_name_or_path"] = get_save_dir(model_name, finetuning_type, checkpoints)
        if get("top.quantization_bit") != "none":
            args["quantization_bit"] = int(get("top.quantization_bit"))
            args["quantization_method"] = get("top.quantization_method")
        return {k: v for k, v in args.items() if v is not None}

    def _error(self, data: dict) -> str:
        lang = self._get(data, "top.lang")
        if self.process is not None or self.engine.runner.running:
            return ALERTS["err_conflict"][lang]
        if not self._get(data, "top.model_path"):
            return ALERTS["err_no_path"][lang]
        if not _tasks(self._get(data, "eval.bench_task"), self._get(data, "eval.bench_lm_eval")):
            return LOCALES["bench_task"].get(lang, LOCALES["bench_task"]["en"])["info"]
        if not _text(self._get(data, "eval.bench_save_dir")):
            return ALERTS["err_no_output_dir"][lang]
        return ""

    def preview(self, data: dict) -> dict:  # no forward references: gradio resolves the hints
        output = self.manager.get_elem_by_id("eval.bench_output")
        error = self._error(data)
        if error:
            gr.Warning(error)
            return {output: error}
        config = os.path.join(DEFAULT_CACHE_DIR, EVAL_CONFIG)
        text = yaml.safe_dump(self._args(data), allow_unicode=True, sort_keys=False)
        return {output: f"```bash\nllamafactory-cli eval {config}\n```\n\n```yaml\n{text}```"}

    def stop(self) -> None:
        if self.process is not None:
            abort_process(self.process.pid)

    def run(self, data: dict) -> Generator[dict, None, None]:
        output, progress, chart = (
            self.manager.get_elem_by_id(f"eval.bench_{n}") for n in ("output", "progress", "chart")
        )
        lang, error = self._get(data, "top.lang"), self._error(data)
        if error:
            gr.Warning(error)
            yield {output: error}
            return
        args = self._args(data)
        os.makedirs(DEFAULT_CACHE_DIR, exist_ok=True)
        config = os.path.join(DEFAULT_CACHE_DIR, EVAL_CONFIG)
        with open(config, "w", encoding="utf-8") as f:
            yaml.safe_dump(args, f, allow_unicode=True)
        # NOTE: no shell, as LlamaBoard launches its own runs
        self.process = Popen(["llamafactory-cli", "eval", config], stdout=PIPE, stderr=STDOUT)
        chunks: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(self.process.stdout, chunks), daemon=True)
        reader.start()
        yield {output: "", progress: gr.Slider(visible=False), chart: gr.Image(value=None, visible=False)}
        while self.process.poll() is None:
            log = b"".join(chunks).decode("utf-8", errors="replace")
            yield {output: _log_block(log), progress: _progress(log)}
            time.sleep(1)
        reader.join()
        code, self.process = self.process.returncode, None
        log = b"".join(chunks).decode("utf-8", errors="replace")
        save_dir = Path(args["save_dir"])
        if code == 0 and (save_dir / "results.log").is_file():
            from PIL import Image

            table = (save_dir / "results.log").read_text(encoding="utf-8")
            gr.Info(ALERTS["info_finished"][lang])
            with Image.open(save_dir / "geobench.png") as image:
                picture = image.copy()
            yield {
                output: f"{ALERTS['info_finished'][lang]} {save_dir}\n\n```\n{table}\n```",
                progress: gr.Slider(visible=False),
                chart: gr.Image(value=picture, visible=True),
            }
        else:
            lines = [line for line in log.replace("\r", "\n").splitlines() if line.strip()]
            reason = next((line for line in reversed(lines) if _ERROR.match(line)), "")
            gr.Warning(ALERTS["err_failed"][lang])
            yield {
                output: f"{ALERTS['err_failed'][lang]} Exit code: {code}\n\n**{reason}**\n\n" + _log_block(log),
                progress: gr.Slider(visible=False),
            }


def _tasks(picked: list[str], harness: str | None) -> list[str]:
    """The picked tasks, then the harness's names as ``lm_eval:NAME`` (the command checks them)."""
    return [*picked, *(PREFIX + name.removeprefix(PREFIX) for name in split(harness))]


def _drain(stream, chunks: list[bytes]) -> None:
    for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
        chunks.append(chunk)
    stream.close()


def _log_block(log: str) -> str:
    lines = [line for line in log.replace("\r", "\n").splitlines() if line.strip() and not _TQDM.search(line)]
    return "```\n" + "\n".join(lines[-30:]) + "\n```"


def _progress(log: str) -> gr.Slider:
    found = _TQDM.findall(log)
    if not found:
        return gr.Slider(visible=False)
    task, percent, done, total = found[-1]
    return gr.Slider(label=f"{task}: {done}/{total}", value=int(percent), visible=True)


# ---------------------------------------------------------------------------------------------
# Labels (llamafactory.webui.locales): English and Chinese; LlamaBoard's other languages show the English ones.


SHARES = {"en": "Comma-separated, one per dataset, summing to 1.", "zh": "逗号分隔，每个数据集一个，总和为 1。"}


def _stage_labels(stage: int) -> dict[str, dict[str, dict[str, str]]]:
    return {
        f"tspt_stage{stage}_dataset": {
            "en": {"label": f"Stage {stage} datasets", "info": "Registry names, mixed by tokens."},
            "zh": {"label": f"阶段 {stage} 数据集", "info": "数据集名称，按 token 比例混合。"},
        },
        f"tspt_stage{stage}_mix": {
            "en": {"label": f"Stage {stage} token shares", "info": SHARES["en"]},
            "zh": {"label": f"阶段 {stage} token 比例", "info": SHARES["zh"]},
        },
        f"tspt_stage{stage}_tokens": {
            "en": {"label": f"Stage {stage} token budget", "info": "Packed training tokens, e.g. 4e9."},
            "zh": {"label": f"阶段 {stage} token 预算", "info": "打包后的训练 token 数，例如 4e9。"},
        },
        f"tspt_stage{stage}_learning_rate": {
            "en": {"label": f"Stage {stage} learning rate", "info": "Empty: the learning rate above."},
            "zh": {"label": f"阶段 {stage} 学习率", "info": "留空：使用上方的学习率。"},
        },
        f"tspt_stage{stage}_warmup_ratio": {
            "en": {"label": f"Stage {stage} warmup ratio", "info": "A fraction of the stage's steps; empty: global."},
            "zh": {"label": f"阶段 {stage} 预热比例", "info": "占该阶段步数的比例；留空：全局设置。"},
        },
    }


def _harness_labels(prefix: str, include_key: str, en: str, zh: str) -> dict[str, dict[str, dict[str, str]]]:
    """The harness boxes of the eval panel and of the Train tab: task names (``en`` / ``zh``: what becomes of each)
    and their folder (``include_key``, the yaml key it fills)."""
    return {
        f"{prefix}lm_eval": {
            "en": {"label": "lm-evaluation-harness tasks", "info": f"Task and group names, comma-separated; {en}"},
            "zh": {"label": "lm-evaluation-harness 任务", "info": f"任务或任务组名称，逗号分隔；{zh}"},
        },
        f"{prefix}lm_eval_include_path": {
            "en": {"label": "Harness task folder", "info": f"Your own task yamls ({include_key}); empty: none."},
            "zh": {"label": "Harness 任务目录", "info": f"自定义任务 yaml（{include_key}）；留空：不使用。"},
        },
    }


LOCALES: dict[str, dict[str, dict[str, str]]] = {
    "mix_strategy": {
        "en": {"label": "Dataset mixing", "info": f"{TOKEN_MIX}: shares of the trained tokens (pt, sft)."},
        "zh": {"label": "数据集混合方式", "info": f"{TOKEN_MIX}：按训练 token 比例混合（pt、sft）。"},
    },
    "interleave_probs": {
        "en": {
            "label": "Shares (interleave_probs)",
            "info": f"{SHARES['en']} interleave_under/over: of the examples.",
        },
        "zh": {"label": "比例（interleave_probs）", "info": f"{SHARES['zh']}interleave_under/over：按样本数。"},
    },
    "tspt_tab": {
        "en": {"label": "TSPT: two-stage pre-adaptation pretraining (JiuZhou)"},
        "zh": {"label": "TSPT：两阶段预适应预训练（JiuZhou）"},
    },
    **_stage_labels(1),
    **_stage_labels(2),
    "tspt_vocab_corpus": {
        "en": {
            "label": "Vocabulary corpus (stage 0)",
            "info": "Datasets to learn new tokens from; empty: no stage 0.",
        },
        "zh": {"label": "词表语料（阶段 0）", "info": "用于学习新 token 的数据集；留空：不扩充词表。"},
    },
    "tspt_vocab_size": {
        "en": {"label": "New tokens", "info": "How many tokens to add."},
        "zh": {"label": "新增 token 数", "info": "要添加的 token 数量。"},
    },
    "tspt_vocab_init": {
        "en": {"label": "New embedding rows", "info": "prepared: mean of the pieces (PreparedLLM)."},
        "zh": {"label": "新嵌入初始化", "info": "prepared：子词嵌入的均值（PreparedLLM）。"},
    },
    "geobench_tab": {
        "en": {"label": "GeoBench during training"},
        "zh": {"label": "训练中的 GeoBench 评测"},
    },
    "geobench_eval_steps": {
        "en": {"label": "GeoBench every N steps", "info": "0: never. Logs geobench_TASK_acc."},
        "zh": {"label": "每 N 步评测 GeoBench", "info": "0：不评测。记录 geobench_TASK_acc。"},
    },
    "geobench_tasks": {
        "en": {"label": "GeoBench tasks", "info": "Objective tasks, scored by likelihood."},
        "zh": {"label": "GeoBench 任务", "info": "客观题任务，按似然评分。"},
    },
    "geobench_task_dir": {
        "en": {"label": "GeoBench folder", "info": "K2 or JiuZhou layout; empty: the hub dataset daven3/geobench."},
        "zh": {"label": "GeoBench 数据目录", "info": "K2 或 JiuZhou 格式；留空：使用 daven3/geobench。"},
    },
    "geobench_n_shot": {
        "en": {"label": "Exemplars (n-shot)"},
        "zh": {"label": "示例数（n-shot）"},
    },
    "geobench_max_samples": {
        "en": {"label": "Questions per task", "info": "A random subset by seed; empty: all."},
        "zh": {"label": "每个任务的题数", "info": "按随机种子抽取子集；留空：全部。"},
    },
    **_harness_labels(
        "geobench_",
        "geobench_lm_eval_include_path",
        "each is scored as lm_eval:NAME. Logs geobench_lm_eval_NAME_METRIC.",
        "每个按 lm_eval:NAME 评测。记录 geobench_lm_eval_NAME_METRIC。",
    ),
    "bench_tab": {
        "en": {"label": "GeoBench and general benchmarks (llamafactory-cli eval)"},
        "zh": {"label": "GeoBench 与通用评测（llamafactory-cli eval）"},
    },
    "bench_task": {
        "en": {"label": "Tasks", "info": "Choose at least one task or suite."},
        "zh": {"label": "评测任务", "info": "请至少选择一个任务或任务组。"},
    },
    "bench_task_dir": {
        "en": {"label": "Task folder", "info": "Local data; empty: the task's hub dataset."},
        "zh": {"label": "数据目录", "info": "本地数据；留空：使用任务的 hub 数据集。"},
    },
    "bench_mode": {
        "en": {
            "label": "Scoring",
            "info": "likelihood: option probabilities; generate: answers. Generated-answer tasks always generate.",
        },
        "zh": {"label": "评分方式", "info": "likelihood：选项概率；generate：生成答案。生成式任务总是生成答案。"},
    },
    "bench_lang": {
        "en": {"label": "Prompt language"},
        "zh": {"label": "提示语言"},
    },
    **_harness_labels(
        "bench_",
        "lm_eval_include_path",
        "each runs as lm_eval:NAME with the settings below.",
        "每个按 lm_eval:NAME 运行。",
    ),
    "bench_judge_api_base": {
        "en": {"label": "Judge endpoint", "info": "OpenAI-compatible URL for free-form answers; key: OPENAI_API_KEY."},
        "zh": {"label": "评审模型地址", "info": "兼容 OpenAI 的 URL，用于自由作答；密钥：OPENAI_API_KEY。"},
    },
    "bench_judge_model": {
        "en": {"label": "Judge model", "info": "With the endpoint; empty: no judge."},
        "zh": {"label": "评审模型", "info": "与地址一同设置；留空：不评审。"},
    },
    "bench_n_shot": {
        "en": {"label": "Exemplars (n-shot)"},
        "zh": {"label": "示例数（n-shot）"},
    },
    "bench_batch_size": {
        "en": {"label": "Batch size"},
        "zh": {"label": "批处理大小"},
    },
    "bench_max_samples": {
        "en": {"label": "Questions per task", "info": "A random subset by seed; empty: all."},
        "zh": {"label": "每个任务的题数", "info": "按随机种子抽取子集；留空：全部。"},
    },
    "bench_save_dir": {
        "en": {"label": "Save folder", "info": "The same folder resumes an interrupted run."},
        "zh": {"label": "保存目录", "info": "同一目录可续跑中断的评测。"},
    },
    "bench_overwrite": {
        "en": {"label": "Overwrite", "info": "Start over in a folder that holds a run."},
        "zh": {"label": "覆盖", "info": "在已有结果的目录中重新开始。"},
    },
    "bench_preview_btn": {"en": {"value": "Preview command"}, "zh": {"value": "预览命令"}},
    "bench_start_btn": {"en": {"value": "Start"}, "zh": {"value": "开始"}},
    "bench_stop_btn": {"en": {"value": "Abort"}, "zh": {"value": "中断"}},
    "bench_output": {"en": {"value": "Ready."}, "zh": {"value": "准备就绪。"}},
}


def add_locales(locales: dict[str, dict[str, dict[str, str]]]) -> None:
    for name, by_lang in LOCALES.items():
        locales[name] = {lang: by_lang.get(lang, by_lang["en"]) for lang in ("en", "ru", "zh", "ko", "ja")}
