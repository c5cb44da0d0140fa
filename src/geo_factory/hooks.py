"""All patching of LLaMA-Factory lives here.

LLaMA-Factory has no plugin discovery, so geo-factory bootstraps itself: ``geo_factory.pth`` in
site-packages calls :func:`install` at interpreter start (in every process, torchrun workers
included). That only puts a post-import finder on ``sys.meta_path``; nothing is patched and
nothing heavy is imported until the LLaMA-Factory module concerned is imported. Then the
module is patched right after it executes, before any ``from ... import`` binds its names.

Symbols touched, and why (the whole list):

``llamafactory`` (import)
    Version guard: the installed version must lie in :data:`SUPPORTED`, else nothing is patched.
``llamafactory.launcher.launch`` / ``USAGE``
    Route ``llamafactory-cli eval`` (0.9.5 raises NotImplementedError) to geo-factory's evaluator, under torchrun
    when ``train`` would be (``FORCE_TORCHRUN``, or several accelerators); in every other command, a configuration
    error of geo-factory's own (a bad ``geobench_*`` / ``geo_tools`` value, a missing benchmark file) is one line
    and exit status 2, as in ``eval``, not a traceback; ``train`` checks it before torchrun starts
    (:mod:`geo_factory.launch_check`).
``llamafactory.hparams.parser._parse_train_args``
    Parse the TSPT, in-training GeoBench and decontamination argument dataclasses alongside LLaMA-Factory's own,
    its data arguments with ``mix_strategy: interleave_tokens`` added
    (so ``train -h`` lists them), accept ``stage: tspt``, check dataset names, stage 0's settings, a finished TSPT
    run, the in-training evaluation's task names and folders, and the GeoBench to decontaminate against before any
    work.
``llamafactory.hparams.parser._parse_infer_args``
    Parse the ``geo_tools*`` keys of chat/webchat/api yamls alongside LLaMA-Factory's own and check them before
    any model loads; the chat model built from those arguments takes the tool session (parsed once).
``llamafactory.data.parser.get_dataset_list``
    Resolve dataset names against the user's ``dataset_info.json`` merged over geo-factory's.
``llamafactory.data.converter.align_dataset``
    Drop GeoBench-contaminated rows (``geobench_decontaminate``) from every dataset LLaMA-Factory or TSPT loads.
``llamafactory.model.loader.load_model``
    Stop an adapter whose embedding rows do not fit the base model (a vocabulary-expanded one on the original
    base) before any weight loads.
``llamafactory.train.pt.workflow.get_dataset`` / ``llamafactory.train.sft.workflow.get_dataset``
    Build a TSPT stage's token-share mixture, or ``mix_strategy: interleave_tokens``'s (:mod:`geo_factory.mixing`),
    instead of LLaMA-Factory's example-level merge.
``llamafactory.train.tuner.run_pt`` / ``run_sft``
    Run the TSPT stages, and attach the in-training GeoBench callback; under torchrun, all ranks meet once the
    workflow is done, and a rank LLaMA-Factory's launcher started then exits without tearing its process group
    down (gloo's teardown aborted finished runs in CI).
``llamafactory.train.pt.trainer.CustomTrainer.__init__`` / ``llamafactory.train.sft.trainer.CustomSeq2SeqTrainer.__init__``
    Hand the built trainer to the GeoBench callback, which logs its metrics through ``Trainer.log`` (the one
    call that reaches the ``report_to`` integrations, which run before any user callback); give a mixture's
    trainer its per-source meter (:mod:`geo_factory.source_loss`).
``CustomTrainer.compute_loss`` / ``log`` and ``CustomSeq2SeqTrainer.compute_loss`` / ``log``
    A mixture's rows carry their dataset: the meter takes it and the logits, and adds ``loss_<dataset>`` and
    ``tokens_<dataset>`` to each training log row before ``Trainer.log`` hands it on.
``llamafactory.train.callbacks.LogCallback.on_log``
    Carry ``geobench_*``, ``loss_*``, ``tokens_*`` and ``eval_*_loss`` (one per held-out set) metrics into
    trainer_log.jsonl (LogCallback copies a fixed set of keys).
``llamafactory.chat.hf_engine.Thread``
    Generate in a thread that the interpreter joins and that stops when asked: a daemon one still running at
    exit aborts the process (SIGABRT after ``chat``'s last answer; see :mod:`geo_factory.chat`).
``llamafactory.chat.chat_model.ChatModel.__init__`` / ``stream_chat`` / ``run_chat``
    Stop each chat model's event-loop thread at exit; end ``chat`` on end of input (status 0) and on Ctrl-C
    (status 130) without a traceback; with ``geo_tools``, execute the model's tool calls and let it continue
    (:mod:`geo_factory.tools.chat`).
``llamafactory.webui.locales.LOCALES`` / ``llamafactory.webui.control.list_datasets`` / ``change_stage`` / ``get_trainer_info``
    LlamaBoard: English and Chinese labels of geo-factory's fields; ``TSPT (JiuZhou)`` in the shared
    ``TRAINING_STAGES`` dict; the registry in the dataset pickers; TSPT's per-stage progress and two-stage loss plot;
    a token mixture's loss curve per dataset.
``llamafactory.webui.runner.Runner._initialize`` / ``_parse_train_args`` / ``monitor``
    LlamaBoard runs: the ``tspt_*`` / ``geobench_*`` keys in the yaml, checked by the yaml path's own parser before
    anything is written; a last loss-plot refresh when a run ends.
``llamafactory.webui.components.train.create_train_tab`` / ``components.eval.create_eval_tab``
    LlamaBoard's tabs with the TSPT and in-training GeoBench settings, and the ``llamafactory-cli eval`` panel
    (:mod:`geo_factory.webui`).

Set ``GEO_FACTORY_DISABLE=1`` to turn all of it off.
"""

from __future__ import annotations

import os
import sys


TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this module is imported at every interpreter start
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any


SUPPORTED = ("0.9.5", "0.9.6")  # tested range of llamafactory: >= first, < second
_FALSY = ("", "0", "false", "no", "off")


def version_problem(installed: str) -> str | None:
    """Why ``installed`` llamafactory cannot be patched, or None when it is in the tested range."""
    from packaging.version import InvalidVersion, Version

    low, high = SUPPORTED
    try:
        ok = Version(low) <= Version(installed) < Version(high)
    except InvalidVersion:
        ok = False
    if ok:
        return None
    return (
        f"geo-factory supports llamafactory>={low},<{high}, but llamafactory {installed} is installed; "
        "its geoscience datasets, `stage: tspt` and `llamafactory-cli eval` are NOT active. "
        f"Fix: pip install 'llamafactory>={low},<{high}'. To try this version anyway, set "
        "GEO_FACTORY_ALLOW_UNTESTED=1; to silence this, set GEO_FACTORY_DISABLE=1."
    )


# ---------------------------------------------------------------------------------------------
# The patches, one function per LLaMA-Factory module.


def _patch_launcher(launcher: ModuleType) -> None:
    launch = launcher.launch

    def geo_launch() -> None:
        command = sys.argv[1] if len(sys.argv) > 1 else "help"
        if command == "eval":
            sys.argv.pop(1)
            from .eval import run_eval

            run_eval()  # under torchrun where `train` would be
            return
        args = sys.argv[2:]  # `launch` takes the command off sys.argv
        try:
            if command == "train":
                from .launch_check import check_before_torchrun

                check_before_torchrun(args)  # where `launch` would start torchrun: each rank would fail with it
            launch()
        except ValueError as err:
            from .eval.data import EvalDataError
            from .hparams.checks import ConfigError

            if not isinstance(err, (ConfigError, EvalDataError)):
                raise
            print(f"llamafactory-cli {command}: error: {_given_in(err, args)}: {err}", file=sys.stderr)
            sys.exit(2)

    launcher.launch = geo_launch
    line = "|   llamafactory-cli train -h: train models                          |\n"
    launcher.USAGE = launcher.USAGE.replace(
        line, line + "|   llamafactory-cli eval CONFIG.yaml: GeoBench, MMLU, CMMLU, C-Eval |\n"
    )


def _given_in(err: Exception, args: list[str]) -> str:
    """Where the bad value came from: a key overridden on the command line, else the config file (``args`` are the
    command's: the file, then the overrides)."""
    overrides = {arg.lstrip("-").split("=")[0] for arg in args[1:]}
    if getattr(err, "key", None) in overrides:
        return "command line"
    return args[0] if args and args[0].endswith((".yaml", ".yml", ".json")) else "arguments"


def _patch_hparams_parser(parser: ModuleType) -> None:
    def _parse_train_args(args: dict[str, Any] | list[str] | None = None) -> tuple[Any, ...]:
        # imported here, not at patch time: geo_factory.hparams itself imports llamafactory.hparams
        from transformers import HfArgumentParser

        from .hparams import (
            DecontaminationArguments,
            GeoBenchTrainArguments,
            GeoDataArguments,
            GeoFinetuningArguments,
            TsptArguments,
            apply_extension_args,
        )

        ours = {parser.FinetuningArguments: GeoFinetuningArguments, parser.DataArguments: GeoDataArguments}
        lf_args = [ours.get(cls, cls) for cls in parser._TRAIN_ARGS]
        hf_parser = HfArgumentParser([*lf_args, TsptArguments, GeoBenchTrainArguments, DecontaminationArguments])
        allow_extra_keys = parser.is_env_enabled("ALLOW_EXTRA_ARGS")
        *lf_parsed, tspt_args, geobench_args, decontamination_args = parser._parse_args(
            hf_parser, args, allow_extra_keys=allow_extra_keys
        )
        apply_extension_args(*lf_parsed, tspt_args, geobench_args, decontamination_args)
        _check_with_domain_code(*lf_parsed[:4])
        return tuple(lf_parsed)

    def _parse_infer_args(args: dict[str, Any] | list[str] | None = None) -> tuple[Any, ...]:
        from transformers import HfArgumentParser

        from .hparams import ToolsArguments

        hf_parser = HfArgumentParser([*parser._INFER_ARGS, ToolsArguments])
        allow_extra_keys = parser.is_env_enabled("ALLOW_EXTRA_ARGS")
        *lf_parsed, tools_args = parser._parse_args(hf_parser, args, allow_extra_keys=allow_extra_keys)
        from .tools.chat import parse_session

        parse_session(tools_args)  # the ChatModel being built, if any, takes it (see _patch_chat_model)
        return tuple(lf_parsed)

    parser._parse_train_args = _parse_train_args
    parser._parse_infer_args = _parse_infer_args


def _check_with_domain_code(model_args, data_args, training_args, finetuning_args) -> None:
    """Still at parsing, before any work: the checks ``hparams`` cannot make without importing the domain modules."""
    if finetuning_args.tspt is not None:
        from .tspt import check_at_parsing

        check_at_parsing(finetuning_args.tspt, model_args, data_args, training_args, finetuning_args)
    geobench = getattr(finetuning_args, "geobench", None)
    if geobench is not None:
        from .eval.plan import for_training

        for_training(geobench, model_args.cache_dir, model_args.hf_hub_token)  # task names and their folders
    decontamination = getattr(data_args, "geobench_decontamination", None)
    if decontamination is not None:
        from .curation.decontaminate import get_index

        get_index(  # read GeoBench now: a missing or malformed one stops the run before any work
            decontamination.geobench_decontaminate_task_dir,
            decontamination.geobench_decontaminate_ngram,
            cache_dir=model_args.cache_dir,
            keys=("geobench_decontaminate_task_dir", "geobench_task_dir"),
        )


def _patch_data_parser(data_parser: ModuleType) -> None:
    from .datasets import registry_get_dataset_list

    get_dataset_list = data_parser.get_dataset_list

    def geo_get_dataset_list(dataset_names: list[str] | None, dataset_dir: str | dict) -> list[Any]:
        return registry_get_dataset_list(get_dataset_list, dataset_names, dataset_dir)

    data_parser.get_dataset_list = geo_get_dataset_list


def _patch_data_converter(converter: ModuleType) -> None:
    align_dataset = converter.align_dataset

    def geo_align_dataset(dataset, dataset_attr, data_args, training_args):
        dataset = align_dataset(dataset, dataset_attr, data_args, training_args)
        if getattr(data_args, "geobench_decontamination", None) is None:
            return dataset
        from .curation.decontaminate import decontaminate_aligned

        return decontaminate_aligned(dataset, str(dataset_attr), data_args, training_args)

    converter.align_dataset = geo_align_dataset


def _patch_model_loader(loader: ModuleType) -> None:
    load_model = loader.load_model

    def geo_load_model(tokenizer, model_args, *args, **kwargs):
        from .tspt import check_adapter_vocabulary

        check_adapter_vocabulary(tokenizer, model_args)
        return load_model(tokenizer, model_args, *args, **kwargs)

    loader.load_model = geo_load_model


def _patch_workflow(workflow: ModuleType) -> None:
    get_dataset = workflow.get_dataset

    def geo_get_dataset(template, model_args, data_args, training_args, stage, **tokenizer_module):
        if getattr(data_args, "tspt_mixture", None) is not None:
            from .tspt import get_mixture_dataset

            return get_mixture_dataset(get_dataset, template, model_args, data_args, training_args, **tokenizer_module)
        if data_args.mix_strategy == "interleave_tokens":
            from .mixing import get_token_mixture_dataset

            return get_token_mixture_dataset(
                get_dataset, template, model_args, data_args, training_args, stage, **tokenizer_module
            )
        return get_dataset(template, model_args, data_args, training_args, stage, **tokenizer_module)

    workflow.get_dataset = geo_get_dataset


def _patch_tuner(tuner: ModuleType) -> None:
    run_pt, run_sft = tuner.run_pt, tuner.run_sft

    def geo_run_pt(model_args, data_args, training_args, finetuning_args, callbacks=None):
        callbacks = _with_geobench_callback(callbacks, model_args, data_args, finetuning_args)
        if getattr(finetuning_args, "tspt", None) is not None:
            from .tspt import run_tspt

            run_tspt(run_pt, model_args, data_args, training_args, finetuning_args, callbacks)
        else:
            run_pt(model_args, data_args, training_args, finetuning_args, callbacks)
        _all_ranks_done()

    def geo_run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks=None):
        callbacks = _with_geobench_callback(callbacks, model_args, data_args, finetuning_args)
        run_sft(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)
        _all_ranks_done()

    tuner.run_pt, tuner.run_sft = geo_run_pt, geo_run_sft


def _all_ranks_done() -> None:
    """Every rank through the workflow (rank 0 saves the model, its state and plots after the others have finished)
    before any leaves. A process that LLaMA-Factory's launcher started under torchrun has nothing left to do but
    destroy the process group, which is racy on gloo (two aborts in CI, SIGABRT after a finished run): it leaves
    as an eval rank does (:func:`geo_factory.eval.distributed.leave`). Any other process (a script of the user's
    own that calls ``run_exp``) keeps running after the barrier."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if _started_by_launcher():
        from .eval.distributed import leave

        leave()  # does not return
    else:
        dist.barrier()


def _started_by_launcher() -> bool:
    """This process is ``llamafactory/launcher.py`` run by torchrun, whose work ends with ``run_exp`` (located, not
    imported: a second copy of the script as a module would only be patched for nothing)."""
    from importlib.util import find_spec

    main, launcher = sys.argv[0] if sys.argv else "", find_spec("llamafactory.launcher").origin
    return os.path.isfile(main) and os.path.samefile(main, launcher)


def _bind_geobench_callback(trainer_cls: type) -> None:
    init = trainer_cls.__init__

    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        callback = sys.modules.get("geo_factory.eval.callback")  # not imported: no GeoBench callback exists
        for cb in self.callback_handler.callbacks if callback is not None else ():
            if isinstance(cb, callback.GeoBenchCallback):
                cb.set_trainer(self)

    trainer_cls.__init__ = __init__


def _bind_source_meter(trainer_cls: type) -> None:
    init, compute_loss, log = trainer_cls.__init__, trainer_cls.compute_loss, trainer_cls.log

    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        if getattr(self.finetuning_args, "mixture", None):
            from . import source_loss

            source_loss.attach(self)

    def geo_compute_loss(self, model, inputs, *args, **kwargs):
        if "mix_source" not in inputs:
            return compute_loss(self, model, inputs, *args, **kwargs)
        from . import source_loss

        return source_loss.compute_loss(compute_loss, self, model, inputs, *args, **kwargs)

    def geo_log(self, logs, *args, **kwargs):
        source_loss = sys.modules.get("geo_factory.source_loss")  # not imported: no trainer has a meter
        if source_loss is None:
            return log(self, logs, *args, **kwargs)
        return source_loss.log(log, self, logs, *args, **kwargs)

    trainer_cls.__init__, trainer_cls.compute_loss, trainer_cls.log = __init__, geo_compute_loss, geo_log


def _patch_trainer(trainer_cls: type) -> None:
    _bind_geobench_callback(trainer_cls)
    _bind_source_meter(trainer_cls)


_CARRIED = ("geobench_", "loss_", "tokens_")  # in-training GeoBench; a mixture's per-dataset loss and tokens


def _patch_callbacks(callbacks: ModuleType) -> None:
    log_callback = callbacks.LogCallback
    on_log, write_log = log_callback.on_log, log_callback._write_log

    def geo_on_log(self, args, state, control, **kwargs):
        last = state.log_history[-1] if state.log_history else {}
        extra = {
            k: v for k, v in last.items() if k.startswith(_CARRIED) or (k.startswith("eval_") and k.endswith("_loss"))
        }
        if extra:  # bound now: LogCallback writes its row later, from a thread
            self._write_log = lambda output_dir, logs: write_log(self, output_dir, {**logs, **extra})
        try:
            return on_log(self, args, state, control, **kwargs)
        finally:
            self.__dict__.pop("_write_log", None)

    log_callback.on_log = geo_on_log


def _patch_chat_model(chat_model: ModuleType) -> None:
    from . import chat
    from .tools import chat as tool_chat

    init, run_chat = chat_model.ChatModel.__init__, chat_model.run_chat

    stream_chat = chat_model.ChatModel.stream_chat

    def __init__(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        chat.close_at_exit(self)
        tool_chat.attach(self)

    chat_model.ChatModel.__init__ = __init__
    chat_model.ChatModel.stream_chat = lambda self, *args, **kwargs: tool_chat.stream_chat(
        stream_chat, self, *args, **kwargs
    )
    chat_model.run_chat = lambda: chat.run_chat(run_chat)


def _patch_hf_engine(hf_engine: ModuleType) -> None:
    from .chat import GenerationThread

    hf_engine.Thread = GenerationThread


def _patch_webui_locales(locales: ModuleType) -> None:
    from .webui import add_locales

    add_locales(locales.LOCALES)


def _patch_webui_control(control: ModuleType) -> None:
    from . import webui

    webui.add_tspt_stage()
    list_datasets, change_stage, trainer_info = control.list_datasets, control.change_stage, control.get_trainer_info
    control.list_datasets = lambda dataset_dir=None, training_stage=None: webui.list_datasets(
        list_datasets, dataset_dir, training_stage
    )
    control.change_stage = lambda training_stage: webui.change_stage(change_stage, training_stage)
    control.get_trainer_info = lambda lang, output_path, do_train: webui.get_trainer_info(
        trainer_info, lang, output_path, do_train
    )


def _patch_webui_runner(runner: ModuleType) -> None:
    from . import webui

    cls = runner.Runner
    initialize, parse_train_args, monitor = cls._initialize, cls._parse_train_args, cls.monitor

    def geo_monitor(self):  # a generator function: gradio streams only those
        yield from webui.monitor(monitor, self)

    cls._initialize = lambda self, data, do_train, from_preview: webui.initialize(
        initialize, self, data, do_train, from_preview
    )
    cls._parse_train_args = lambda self, data: webui.parse_train_args(parse_train_args, self, data)
    cls.monitor = geo_monitor


def _patch_webui_tab(module: ModuleType, name: str) -> None:
    create = getattr(module, name)

    def create_tab(engine):
        from . import webui

        return getattr(webui, name)(create, engine)

    setattr(module, name, create_tab)


def _with_geobench_callback(callbacks, model_args, data_args, finetuning_args) -> list[Any]:
    callbacks = list(callbacks or [])
    geobench_args = getattr(finetuning_args, "geobench", None)
    if geobench_args is not None and geobench_args.geobench_eval_steps:
        from .eval.callback import GeoBenchCallback

        callbacks.insert(0, GeoBenchCallback(geobench_args, model_args, data_args))
    return callbacks


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "llamafactory.launcher": _patch_launcher,
    "llamafactory.hparams.parser": _patch_hparams_parser,
    "llamafactory.data.parser": _patch_data_parser,
    "llamafactory.data.converter": _patch_data_converter,
    "llamafactory.model.loader": _patch_model_loader,
    "llamafactory.train.pt.workflow": _patch_workflow,
    "llamafactory.train.sft.workflow": _patch_workflow,
    "llamafactory.train.tuner": _patch_tuner,
    "llamafactory.train.pt.trainer": lambda module: _patch_trainer(module.CustomTrainer),
    "llamafactory.train.sft.trainer": lambda module: _patch_trainer(module.CustomSeq2SeqTrainer),
    "llamafactory.train.callbacks": _patch_callbacks,
    "llamafactory.chat.chat_model": _patch_chat_model,
    "llamafactory.chat.hf_engine": _patch_hf_engine,
    "llamafactory.webui.locales": _patch_webui_locales,
    "llamafactory.webui.control": _patch_webui_control,
    "llamafactory.webui.runner": _patch_webui_runner,
    "llamafactory.webui.components.train": lambda module: _patch_webui_tab(module, "create_train_tab"),
    "llamafactory.webui.components.eval": lambda module: _patch_webui_tab(module, "create_eval_tab"),
}


# ---------------------------------------------------------------------------------------------
# The mechanism: a post-import finder that costs one dict lookup per import. Duck-typed: importing
# importlib.abc would pull importlib.resources and tempfile into every interpreter start.


class _PatchingLoader:
    def __init__(self, loader: Any, patch: Callable[[ModuleType], None]) -> None:
        self.loader, self.patch = loader, patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.patch(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ... for tracebacks and inspect
        return getattr(self.loader, name)


class _PostImportFinder:
    def __init__(self) -> None:
        self.pending: dict[str, Callable[[ModuleType], None]] = {"llamafactory": _guard_version}

    def find_spec(self, fullname, path=None, target=None):
        patch = self.pending.pop(fullname, None)
        if patch is None:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


_finder: _PostImportFinder | None = None


def _guard_version(llamafactory: ModuleType) -> None:
    problem = version_problem(getattr(llamafactory, "__version__", "unknown"))
    if problem is not None and os.environ.get("GEO_FACTORY_ALLOW_UNTESTED", "").lower() in _FALSY:
        print(f"[geo-factory] WARNING: {problem}", file=sys.stderr)
        return
    if _finder is not None:
        _finder.pending.update(PATCHES)


def install() -> None:
    """Called from ``geo_factory.pth`` (which honours ``GEO_FACTORY_DISABLE``): arm the hooks once."""
    global _finder
    if _finder is not None:
        return
    _finder = _PostImportFinder()
    sys.meta_path.insert(0, _finder)
