"""Tool-call accuracy of SmolLM2-135M-Instruct before and after a LoRA on ``geo_tools_sft`` (issue 11).

Held-out prompts (other questions, values, places and phrasings than ``data/geo_tools_sft.json``), with all seven
tools offered through the template's tool formatting (``smollm2``: LLaMA-Factory's default ReAct-style format,
"Action: NAME / Action Input: JSON"; the observation comes back as a user turn). Per prompt, greedy decoding:

- right tool: the reply's first call (the template's own extractor) names the expected tool;
- valid arguments: they pass the tool's JSON schema (and the call runs without error);
- right number: after the observation, the model's answer holds the expected number (within 1%).

Goal: at least 80% right tool with valid arguments after the LoRA. The LoRA is trained by ``llamafactory-cli
train`` on the CPU (``--steps``); the results go to ``--work``/results.json.

    python benchmarks/bench_tools.py --model ~/.cache/geo-factory/smollm2-135m-instruct --steps 180
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from geo_factory.extras import write_json_atomic


# (question, tool, arguments that answer it, key of the number the answer should hold)
HELDOUT = [
    ("What is the age range of the Oligocene epoch?", "geologic_time", {"name": "Oligocene"}, "unit.start_ma"),
    ("Which era was the Earth in 150 Ma ago?", "geologic_time", {"age_ma": 150}, None),
    ("寒武纪开始于距今多少百万年？", "geologic_time", {"name": "寒武纪"}, "unit.start_ma"),
    ("When did the Ypresian age start?", "geologic_time", {"name": "Ypresian"}, "unit.start_ma"),
    (
        "What seismic moment does a Mw 7.3 earthquake have?",
        "earthquake_energy",
        {"magnitude": 7.3},
        "seismic_moment_nm",
    ),
    ("矩震级 5.2 的地震辐射多少焦耳的能量？", "earthquake_energy", {"magnitude": 5.2}, "radiated_energy_j"),
    (
        "An earthquake had a seismic moment of 3.5e19 N·m. What was its moment magnitude?",
        "earthquake_energy",
        {"moment_nm": 3.5e19},
        "moment_magnitude",
    ),
    ("Express 3.5 GPa in kbar.", "unit_convert", {"value": 3.5, "from_unit": "GPa", "to_unit": "kbar"}, "value"),
    (
        "A well is 8848 ft deep. How many metres is that?",
        "unit_convert",
        {"value": 8848, "from_unit": "ft", "to_unit": "m"},
        "value",
    ),
    ("1.5 HFU 等于多少 mW/m^2？", "unit_convert", {"value": 1.5, "from_unit": "HFU", "to_unit": "mW/m^2"}, "value"),
    ("What is 250 million years in Ga?", "unit_convert", {"value": 250, "from_unit": "Ma", "to_unit": "Ga"}, "value"),
    (
        "Compute the lithostatic pressure 4000 m down in rock of density 2600 kg/m³.",
        "lithostatic",
        {"depth_m": 4000, "density_kg_m3": 2600},
        "pressure_mpa",
    ),
    (
        "地表温度 10°C、地温梯度 30°C/km，6000 米深处的温度是多少？",
        "lithostatic",
        {"depth_m": 6000, "surface_temperature_c": 10, "geothermal_gradient_c_per_km": 30},
        "temperature_c",
    ),
    (
        "How warm is it 12 km down if the surface is 5 °C and the gradient 22 °C/km?",
        "lithostatic",
        {"depth_m": 12000, "surface_temperature_c": 5, "geothermal_gradient_c_per_km": 22},
        "temperature_c",
    ),
    (
        "What is the distance from Chengdu (30.5728, 104.0668) to Xi'an (34.3416, 108.9398)?",
        "geodesic",
        {"lat1": 30.5728, "lon1": 104.0668, "lat2": 34.3416, "lon2": 108.9398},
        "distance_km",
    ),
    (
        "How far is Cairo (30.0444, 31.2357) from Cape Town (-33.9249, 18.4241)?",
        "geodesic",
        {"lat1": 30.0444, "lon1": 31.2357, "lat2": -33.9249, "lon2": 18.4241},
        "distance_km",
    ),
    (
        "成都到拉萨的距离是多少？成都 (30.5728, 104.0668)，拉萨 (29.6525, 91.1721)。",
        "geodesic",
        {"lat1": 30.5728, "lon1": 104.0668, "lat2": 29.6525, "lon2": 91.1721},
        "distance_km",
    ),
    ("How hard is fluorite on the Mohs scale?", "mineral", {"name": "fluorite"}, "mohs_hardness.0"),
    ("磁铁矿的密度有多大？", "mineral", {"name": "磁铁矿"}, "density_g_cm3.0"),
    ("What is the chemical formula of cassiterite?", "mineral", {"name": "cassiterite"}, None),
    ("Search the corpus for a passage on turbidite deposits.", "corpus_search", {"query": "turbidite deposits"}, None),
    ("在语料库里找一段关于冰川侵蚀的内容。", "corpus_search", {"query": "冰川侵蚀"}, None),
]
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _expected(tool: str, arguments: dict, key: str | None) -> float | None:
    from geo_factory.tools import call_tool

    if key is None:
        return None
    value = call_tool(tool, arguments)
    for part in key.split("."):
        value = value[int(part)] if part.isdigit() else value[part]
    return float(value)


def _holds(answer: str, expected: float) -> bool:
    numbers = [float(n) for n in NUMBER.findall(answer.replace(",", ""))]
    return any(abs(n - expected) <= 0.01 * abs(expected) + 1e-9 for n in numbers)


def check_held_out() -> None:
    """A held-out question must not be a training question (the generator's templates could produce one)."""
    from geo_factory.datasets import registry_dir

    rows = json.loads((registry_dir() / "geo_tools_sft.json").read_text(encoding="utf-8"))
    seen = {row["conversations"][0]["value"].strip().lower() for row in rows}
    leaked = [question for question, *_ in HELDOUT if question.strip().lower() in seen]
    if leaked:
        raise SystemExit(f"held-out questions found in geo_tools_sft.json: {leaked}")


def evaluate(model: str, adapter: str | None, template: str = "smollm2", tool_format: str | None = None) -> dict:
    from llamafactory.chat import ChatModel

    from geo_factory.tools import validate
    from geo_factory.tools.chat import ToolSession, tool_round
    from geo_factory.tools.registry import TOOLS

    args = {"model_name_or_path": model, "template": template, "max_new_tokens": 64, "do_sample": False}
    if tool_format:
        args["tool_format"] = tool_format
    if adapter:
        args.update(adapter_name_or_path=adapter, finetuning_type="lora")
    chat = ChatModel(args)
    session = ToolSession(tuple(TOOLS), max_rounds=1, timeout=10.0)
    template, tools = chat.engine.template, session.tools_json()
    rows = []
    for question, tool, arguments, key in tqdm(HELDOUT, desc=f"tool calls ({'LoRA' if adapter else 'base'})"):
        messages = [{"role": "user", "content": question}]
        reply = chat.chat(messages, tools=tools)[0].response_text
        calls = template.extract_tool(reply)
        row = {
            "question": question,
            "expected_tool": tool,
            "reply": reply,
            "right_tool": False,
            "valid_arguments": False,
        }
        if isinstance(calls, list) and calls:
            row["called"] = {"name": calls[0].name, "arguments": calls[0].arguments}
            row["right_tool"] = calls[0].name == tool
            try:
                validate(calls[0].name, calls[0].arguments)
                row["valid_arguments"] = True
            except ValueError as err:
                row["error"] = str(err)
            turns, _ = tool_round(template, reply, session)
            answer = chat.chat(messages + turns, tools=tools)[0].response_text
            row["answer"] = answer
            expected = _expected(tool, arguments, key)
            if expected is not None:
                row["right_number"] = _holds(answer, expected)
        rows.append(row)
    n = len(rows)
    numeric = [row for row, spec in zip(rows, HELDOUT) if spec[3] is not None]
    return {
        "prompts": n,
        "right_tool": sum(r["right_tool"] for r in rows) / n,
        "right_tool_valid_arguments": sum(r["right_tool"] and r["valid_arguments"] for r in rows) / n,
        "right_number": sum(r.get("right_number", False) for r in numeric) / len(numeric),
        "rows": rows,
    }


def train(model: str, output: Path, steps: int, template: str, tool_format: str | None) -> float:
    yaml = output.parent / "bench_tools_train.yaml"
    yaml.write_text(
        f"model_name_or_path: {model}\ntemplate: {template}\nstage: sft\ndo_train: true\nfinetuning_type: lora\n"
        + (f"tool_format: {tool_format}\n" if tool_format else "")
        + "lora_rank: 16\nlora_target: all\ndisable_gradient_checkpointing: true\ndataset: geo_tools_sft\n"
        "cutoff_len: 1536\noverwrite_cache: true\npreprocessing_num_workers: null\ndataloader_num_workers: 0\n"
        f"output_dir: {output}\noverwrite_output_dir: true\nreport_to: none\nlogging_steps: 5\nsave_strategy: 'no'\n"
        f"per_device_train_batch_size: 2\nlearning_rate: 1.0e-3\nmax_steps: {steps}\nlr_scheduler_type: cosine\n"
        "warmup_ratio: 0.05\nseed: 42\n"
    )
    start = time.monotonic()
    cli = str(Path(sys.executable).parent / "llamafactory-cli")
    subprocess.run([cli, "train", str(yaml)], check=True)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(Path.home() / ".cache/geo-factory/smollm2-135m-instruct"))
    parser.add_argument("--steps", type=int, default=180, help="LoRA steps of 2 conversations (default: 180)")
    parser.add_argument("--work", default="saves/bench_tools", help="Folder of the adapter and the results.")
    parser.add_argument("--skip-base", action="store_true", help="Measure the LoRA only.")
    parser.add_argument("--template", default="smollm2", help="Chat template of --model (default: smollm2).")
    parser.add_argument("--tool-format", default=None, help="LLaMA-Factory's tool_format override (default: none).")
    args = parser.parse_args()
    check_held_out()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"model": args.model, "steps": args.steps}

    def save() -> None:  # after each part: a long run on a busy CPU leaves what it has measured
        write_json_atomic(work / "results.json", results)

    if not (work / "lora" / "adapter_model.safetensors").is_file():
        results["train_seconds"] = train(args.model, work / "lora", args.steps, args.template, args.tool_format)
        save()
    results["lora"] = evaluate(args.model, str(work / "lora"), args.template, args.tool_format)
    save()
    if not args.skip_base:
        results["base"] = evaluate(args.model, None, args.template, args.tool_format)
        save()
    for name in ("base", "lora"):
        if name in results:
            r = results[name]
            print(
                f"{name}: right tool {r['right_tool']:.0%}, right tool with valid arguments "
                f"{r['right_tool_valid_arguments']:.0%}, right number {r['right_number']:.0%} ({r['prompts']} prompts)"
            )
    print(f"details in {work / 'results.json'}")


if __name__ == "__main__":
    main()
