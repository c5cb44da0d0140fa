"""Geoscience tools (issue 11): each tool against values checkable by hand, ``geo-factory tool``, and the tool loop
through the real ``llamafactory-cli chat`` and ``api`` with the tiny model fine-tuned here to call tools."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CLI, GEO_FACTORY, Reference, chat, example, greedy_reference, run_cli, workdir
from geo_factory.tools import TOOLS, ToolError, call_tool, observation, run_tool_calls, select_tools, tool_schemas
from geo_factory.tools.chat import MALFORMED, unknown_tool


# ---------------------------------------------------------------------------------------------
# The tools, against published values


def test_geologic_time_by_name_and_by_age() -> None:
    cretaceous = call_tool("geologic_time", {"name": "白垩纪"})["unit"]
    assert (cretaceous["name"], cretaceous["rank"], cretaceous["end_ma"]) == ("Cretaceous", "period", 66.0)
    assert cretaceous["start_ma"] == 143.1 and cretaceous["approximate"] == ["start"]  # "~143.1" on the chart
    assert cretaceous["parents"] == ["Phanerozoic", "Mesozoic"]
    permian = call_tool("geologic_time", {"name": "permian"})["unit"]  # the P-T boundary, 251.902 ± 0.024 Ma
    assert (permian["end_ma"], permian["end_uncertainty_ma"]) == (251.902, 0.024)
    at_kpg = call_tool("geologic_time", {"age_ma": 66.0})["units"]  # K-Pg: 66.0 Ma is the base of the Danian
    assert [u["name"] for u in at_kpg] == ["Phanerozoic", "Cenozoic", "Paleogene", "Paleocene", "Danian"]
    just_before = [u["name"] for u in call_tool("geologic_time", {"age_ma": 66.001})["units"]]
    assert just_before[-1] == "Maastrichtian" and "Cretaceous" in just_before
    assert call_tool("geologic_time", {"age_ma": 3000})["units"][1]["name"] == "Mesoarchean"
    with pytest.raises(ToolError, match="did you mean: Cretaceous"):
        call_tool("geologic_time", {"name": "Cretacous"})


def test_earthquake_energy_hanks_kanamori() -> None:
    # Mw 6.0 <-> M0 = 10^(1.5*6 + 9.1) = 1.259e18 N·m; Es = 5e-5 M0
    mw6 = call_tool("earthquake_energy", {"magnitude": 6.0})
    assert mw6["seismic_moment_nm"] == pytest.approx(1.2589e18, rel=1e-4)
    assert mw6["radiated_energy_j"] == pytest.approx(6.2946e13, rel=1e-4)
    assert call_tool("earthquake_energy", {"moment_nm": 1.2589e18})["moment_magnitude"] == pytest.approx(6.0, abs=1e-4)
    tohoku = call_tool("earthquake_energy", {"energy_j": 5e-5 * 10 ** (1.5 * 9.1 + 9.1)})
    assert tohoku["moment_magnitude"] == pytest.approx(9.1, abs=1e-4)
    with pytest.raises(ToolError, match="exactly one"):
        call_tool("earthquake_energy", {"magnitude": 6, "moment_nm": 1e18})


def test_unit_convert_and_lithostatic() -> None:
    cases = [
        ((1, "kbar", "MPa"), 100.0),
        ((100, "degC", "degF"), 212.0),
        ((2.7, "g/cm^3", "kg/m^3"), 2700.0),
        ((1, "HFU", "mW/m^2"), 41.84),
        ((66, "Ma", "year"), 66e6),
        ((10000, "ft", "km"), 3.048),
    ]
    for (value, src, dst), expected in cases:
        assert call_tool("unit_convert", {"value": value, "from_unit": src, "to_unit": dst})["value"] == pytest.approx(
            expected
        ), (src, dst)
    with pytest.raises(ToolError, match="cannot convert kbar to km"):
        call_tool("unit_convert", {"value": 1, "from_unit": "kbar", "to_unit": "km"})
    # 1 km of 2700 kg/m³ rock: 2700 * 9.80665 * 1000 Pa = 26.478 MPa; 15 °C + 25 °C/km * 1 km = 40 °C
    one = call_tool(
        "lithostatic",
        {"depth_m": 1000, "density_kg_m3": 2700, "surface_temperature_c": 15, "geothermal_gradient_c_per_km": 25},
    )
    assert (one["pressure_mpa"], one["temperature_c"]) == (pytest.approx(26.478), 40.0)
    layered = call_tool(
        "lithostatic",
        {
            "depth_m": 3000,
            "layers": [{"thickness_m": 1000, "density_kg_m3": 2000}, {"thickness_m": 5000, "density_kg_m3": 3000}],
        },
    )
    assert layered["pressure_pa"] == pytest.approx(9.80665 * (2000 * 1000 + 3000 * 2000))


def test_geodesic_quarter_meridian_and_mineral() -> None:
    quarter = call_tool("geodesic", {"lat1": 0, "lon1": 0, "lat2": 90, "lon2": 0})
    assert quarter["distance_km"] == pytest.approx(10001.965729, abs=1e-6)  # WGS84 quarter meridian
    assert quarter["initial_bearing_deg"] == 0.0
    east = call_tool("geodesic", {"lat1": 0, "lon1": 0, "lat2": 0, "lon2": 1})  # 1° of equator: a·π/180
    assert east["distance_m"] == pytest.approx(6378137 * 3.141592653589793 / 180, abs=1e-3)
    assert east["initial_bearing_deg"] == 90.0
    quartz = call_tool("mineral", {"name": "石英"})
    assert (quartz["formula"], quartz["mohs_hardness"], quartz["density_g_cm3"]) == ("SiO2", [7.0], [2.65])
    assert call_tool("mineral", {"name": "Galena"})["crystal_system"] == "cubic"


def test_corpus_search_cites_document_ids() -> None:
    hits = call_tool("corpus_search", {"query": "polysynthetic twinning plagioclase", "top_k": 2})["hits"]
    assert hits[0]["id"] == "geo_corpus_demo:0" and "polysynthetic twinning" in hits[0]["passage"]
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    with pytest.raises(ToolError, match="reads no network"):
        call_tool("corpus_search", {"query": "x", "dataset": "alpaca_en_demo"})


def test_non_finite_numbers_are_bad_arguments_and_results_are_json() -> None:
    """NaN passes every schema bound (it compares false) and 1e400 parses as infinity."""
    for name, arguments, where in [
        ("earthquake_energy", '{"magnitude": NaN}', "magnitude"),
        ("earthquake_energy", '{"moment_nm": Infinity}', "moment_nm"),
        ("geodesic", '{"lat1": 0, "lon1": -Infinity, "lat2": 0, "lon2": 0}', "lon1"),
        ("lithostatic", '{"depth_m": 1e400, "density_kg_m3": 2700}', "depth_m"),
        (
            "lithostatic",
            {"depth_m": 1, "layers": [{"thickness_m": 2, "density_kg_m3": float("nan")}]},
            "layers/0/density_kg_m3",
        ),
    ]:
        error = json.loads(observation(name, arguments))["error"]
        assert error == f"{name}: invalid arguments at `{where}`: NaN or infinite; give a finite number.", error
    # the moment and energy are bounded like the magnitude (Mw -3 to 11), so Mw never leaves its range
    assert "greater than the maximum" in json.loads(observation("earthquake_energy", {"moment_nm": 1e300}))["error"]
    top = call_tool(
        "earthquake_energy", {"energy_j": TOOLS["earthquake_energy"].parameters["properties"]["energy_j"]["maximum"]}
    )
    assert top["moment_magnitude"] == pytest.approx(11)
    huge = {"depth_m": 1e300, "layers": [{"thickness_m": 1e308, "density_kg_m3": 1e308}]}
    assert json.loads(observation("lithostatic", huge)) == {
        "error": "lithostatic: the result is not a finite number for these arguments."
    }


def test_unit_convert_offsets_and_unreadable_units() -> None:
    def convert(value, src, dst):
        return call_tool("unit_convert", {"value": value, "from_unit": src, "to_unit": dst})["value"]

    assert convert(32, "degF", "degC") == 0.0  # not 5.684e-14
    assert convert(273.15, "K", "degC") == 0.0 and convert(-40, "degF", "degC") == -40.0
    assert convert(1e-20, "m", "km") == 1e-23  # tiny values of plain units keep their digits
    with pytest.raises(ToolError, match=r"`from_unit` `m/`: not a unit expression; use names like MPa"):
        convert(1, "m/", "km")
    with pytest.raises(ToolError, match=r"`to_unit` `blah`: 'blah' is not defined in the unit registry"):
        convert(1, "m", "blah")


def test_bad_calls_become_errors_with_the_schema_message() -> None:
    assert json.loads(observation("geodesic", {"lat1": 100, "lon1": 0, "lat2": 0, "lon2": 0})) == {
        "error": "geodesic: invalid arguments at `lat1`: 100 is greater than the maximum of 90"
    }
    assert "'name' is a required property" in json.loads(observation("mineral", {}))["error"]
    assert "Additional properties are not allowed ('depth' was unexpected)" in observation(
        "lithostatic", {"depth_m": 1, "depth": 2}
    )
    assert "not valid JSON" in json.loads(observation("mineral", '{"name": '))["error"]
    assert "unknown tool `minerals`. Did you mean `mineral`?" in json.loads(observation("minerals", {}))["error"]
    assert select_tools("all") == list(TOOLS) and select_tools("mineral, geodesic") == ["mineral", "geodesic"]
    with pytest.raises(ValueError, match="unknown tool `teleport`"):
        select_tools("mineral,teleport")


def test_time_limit_and_result_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from geo_factory.tools.registry import MAX_RESULT_CHARS, Tool

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    slow = Tool("slow", "sleeps", schema, lambda n=0: time.sleep(5) or {}, ())
    big = Tool("big", "talks", schema, lambda n=0: {"text": "x" * (MAX_RESULT_CHARS + 1)}, ())
    monkeypatch.setitem(TOOLS, "slow", slow)
    monkeypatch.setitem(TOOLS, "big", big)
    start = time.monotonic()
    assert json.loads(observation("slow", {}, timeout=0.2)) == {
        "error": "slow: no result within the time limit of 0.2 s."
    }
    assert time.monotonic() - start < 2
    assert json.loads(observation("big", {})) == {
        "error": f"big: the result is over {MAX_RESULT_CHARS} characters; ask for less."
    }


def test_geo_factory_tool_command(cli_env: dict[str, str]) -> None:
    ok = subprocess.run(
        [GEO_FACTORY, "tool", "geologic_time", '{"name": "Maastrichtian"}'],
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["unit"]["start_ma"] == 72.1
    bad = subprocess.run(
        [GEO_FACTORY, "tool", "geodesic", '{"lat1": "north"}'], env=cli_env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "geo-factory tool: error: geodesic: invalid arguments: 'lon1' is a required property"
    ]
    listing = subprocess.run([GEO_FACTORY, "tools", "--compact"], env=cli_env, capture_output=True, text=True)
    assert [json.loads(line)["name"] for line in listing.stdout.splitlines()] == list(TOOLS)
    for args, message in [
        (["earthquake_energy", '{"magnitude": NaN}'], "invalid arguments at `magnitude`: NaN or infinite"),
        (["geodesic", "{}", "--timeout", "-5"], "argument --timeout: must be a number of seconds > 0, got '-5'"),
    ]:
        refused = subprocess.run([GEO_FACTORY, "tool", *args], env=cli_env, capture_output=True, text=True)
        assert refused.returncode == 2 and refused.stdout == "" and message in refused.stderr, refused.stderr


@pytest.mark.parametrize("command", ["tools", "datasets"])
def test_listing_into_a_closed_pipe_is_not_an_error(command: str, cli_env: dict[str, str]) -> None:
    """`geo-factory tools | head -1`: the reader has gone before the listing is written."""
    proc = subprocess.Popen([GEO_FACTORY, command], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""


# ---------------------------------------------------------------------------------------------
# The tool loop through llamafactory-cli, on the tiny model fine-tuned to call tools

RIG_TOOLS = ["geologic_time", "mineral"]
Q_CALL, Q_MALFORMED, Q_FAILING, Q_UNKNOWN, Q_TWICE = (
    "When did the Maastrichtian begin?",
    "Please call a tool badly.",
    "What is the hardness of unobtainium?",
    "Teleport me to the Jurassic.",
    "Compare quartz and galena.",
)


def _call(name: str, arguments: dict) -> dict:
    return {"from": "function_call", "value": json.dumps({"name": name, "arguments": arguments})}


def _rig_rows() -> list[dict]:
    maastrichtian, unobtainium = {"name": "Maastrichtian"}, {"name": "unobtainium"}
    rows = [
        [
            {"from": "human", "value": Q_CALL},
            _call("geologic_time", maastrichtian),
            {"from": "observation", "value": observation("geologic_time", maastrichtian)},
            {"from": "gpt", "value": "It began 72.1 million years ago."},
        ],
        [
            {"from": "human", "value": Q_MALFORMED},
            {"from": "gpt", "value": 'Action: mineral\nAction Input: {"name": quartz'},
            {"from": "observation", "value": json.dumps({"error": MALFORMED})},
            {"from": "gpt", "value": "Sorry, my call was malformed."},
        ],
        [
            {"from": "human", "value": Q_FAILING},
            _call("mineral", unobtainium),
            {"from": "observation", "value": observation("mineral", unobtainium)},
            {"from": "gpt", "value": "That mineral is not in my table."},
        ],
        [
            {"from": "human", "value": Q_UNKNOWN},
            _call("teleport", {"to": "Jurassic"}),
            {"from": "observation", "value": json.dumps({"error": unknown_tool("teleport", tuple(RIG_TOOLS))})},
            {"from": "gpt", "value": "I cannot teleport."},
        ],
        [
            {"from": "human", "value": Q_TWICE},
            _call("mineral", {"name": "quartz"}),
            {"from": "observation", "value": observation("mineral", {"name": "quartz"})},
            _call("mineral", {"name": "galena"}),
            {"from": "observation", "value": observation("mineral", {"name": "galena"})},
            {"from": "gpt", "value": "Galena is softer."},
        ],
    ]
    tools = json.dumps(tool_schemas(RIG_TOOLS))
    return [{"conversations": turns, "tools": tools} for turns in rows]


RIG_CUTOFF = 1024
RIG_ROLES = {"human": "user", "gpt": "assistant", "function_call": "function", "observation": "observation"}


def _unlearned_turns(model: Path) -> list[str]:
    """The rig rows' model turns (calls and answers) that ``model`` does not say greedily after the row's turns
    before them, within the cutoff_len it was trained on: the behaviour the tool-loop tests need, checked in this
    process on the prompt LLaMA-Factory's template builds for chat and training alike."""
    reference = Reference(model, template="mistral", tool_format="default")
    missed = []
    for row in _rig_rows():
        messages = [{"role": RIG_ROLES[t["from"]], "content": t["value"]} for t in row["conversations"]]
        prompt: list[int] = []
        for (source, target), turn in zip(
            reference.template.encode_multiturn(reference.tokenizer, messages, None, row["tools"]),
            messages[1::2],
            strict=True,
        ):
            prompt += source
            if len(prompt) + len(target) > RIG_CUTOFF:  # training cut the row here: nothing further to say
                break
            if reference.greedy(prompt, len(target)) != target:
                missed.append(turn["content"])
            prompt += target
    return missed


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, cli_env: dict[str, str]) -> Path:
    """A user's folder with the tiny model fine-tuned to call tools: full-parameter SFT on the rows (a LoRA of the
    tiny model does not get there in a test's time), trained on until the model says every turn of them. How many
    steps that takes follows the weights and so the machine: 60 steps, then 30 more at a time, up to 150."""
    registry = {
        "rig": {
            "file_name": "rig.json",
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "tools": "tools"},
        }
    }
    work = workdir(tmp_path_factory.mktemp("tools"), tiny_model, registry)
    (work / "data" / "rig.json").write_text(json.dumps(_rig_rows()))
    (work / "train.yaml").write_text(
        "template: mistral\ntool_format: default\nstage: sft\ndo_train: true\nfinetuning_type: full\n"
        "dataset: rig\n"
        f"cutoff_len: {RIG_CUTOFF}\n"
        "overwrite_cache: true\npreprocessing_num_workers: null\n"
        "overwrite_output_dir: true\nreport_to: none\nlogging_steps: 10\nsave_strategy: 'no'\n"
        "per_device_train_batch_size: 5\nlearning_rate: 5.0e-3\nlr_scheduler_type: constant\nseed: 0\n"
        "disable_gradient_checkpointing: true\n"  # the same weights (the forward is not run twice), 15% sooner
    )
    model, steps, missed = "models/tiny-mistral", 60, ["(not trained yet)"]
    for round_ in range(4):
        out = f"saves/rig{round_}"
        run_cli(
            "train", "train.yaml", f"model_name_or_path={model}", f"output_dir={out}", f"max_steps={steps}",
            cwd=work, env=cli_env,
        )  # fmt: skip
        model, steps = out, 30
        missed = _unlearned_turns(work / model)
        if not missed:
            break
    assert not missed, f"after {60 + 30 * round_} steps the rig model still does not say: {missed}"
    (work / "chat.yaml").write_text(
        f"model_name_or_path: {model}\ntemplate: mistral\ntool_format: default\nmax_new_tokens: 64\n"
        f"do_sample: false\ngeo_tools: {','.join(RIG_TOOLS)}\ngeo_tools_max_rounds: 1\n"
    )
    return work


def _answers(stdout: str) -> list[str]:
    return [turn.split("\nUser:", 1)[0] for turn in stdout.split("Assistant: ")[1:]]


@pytest.mark.slow
def test_chat_runs_tool_calls_and_answers(rig: Path, cli_env: dict[str, str]) -> None:
    questions = [Q_CALL, Q_MALFORMED, Q_FAILING, Q_UNKNOWN, Q_TWICE]
    proc = run_cli("chat", "chat.yaml", cwd=rig, env=cli_env, input="\nclear\n".join(questions) + "\nexit\n")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    call, malformed, failing, unknown, twice = _answers(proc.stdout)
    # the call ran, its result went back as an observation, and the model answered from it
    line = '[geo_tools] geologic_time {"name": "Maastrichtian"} -> ' + observation(
        "geologic_time", {"name": "Maastrichtian"}
    )
    assert line in call, call
    assert call.split(line, 1)[1].strip() == "It began 72.1 million years ago.", call
    assert f'[geo_tools] malformed call -> {{"error": "{MALFORMED}"}}' in malformed, malformed
    assert malformed.rstrip().endswith("Sorry, my call was malformed."), malformed
    assert "no mineral `unobtainium` in the table" in failing and failing.rstrip().endswith("not in my table."), (
        failing
    )
    assert "unknown tool `teleport`" in unknown and unknown.rstrip().endswith("I cannot teleport."), unknown
    # geo_tools_max_rounds: 1: the first call runs, the second one is not run and the answer stops, saying why
    assert twice.count("[geo_tools] mineral") == 1, twice
    assert "stopped: the model still calls tools after geo_tools_max_rounds=1 rounds" in twice, twice


def test_chat_rejects_bad_tool_settings(tmp_path: Path, cli_env: dict[str, str]) -> None:
    (tmp_path / "chat.yaml").write_text(
        "model_name_or_path: nowhere\ntemplate: mistral\ngeo_tools: mineral,teleport\n"
    )
    proc = run_cli("chat", "chat.yaml", cwd=tmp_path, env=cli_env, check=False, input="exit\n")
    assert proc.returncode != 0
    assert "`geo_tools: mineral,teleport`: unknown tool `teleport`" in proc.stderr, proc.stderr[-2000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_openai_client_against_api_executes_tool_calls(rig: Path, cli_env: dict[str, str]) -> None:
    from openai import OpenAI

    port = _free_port()
    env = {**cli_env, "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    server = subprocess.Popen(
        [CLI, "api", "chat.yaml"], cwd=rig, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="0", max_retries=0, timeout=120)
        deadline = time.monotonic() + 180
        while True:  # until the model is loaded and the server answers
            try:
                client.models.list()
                break
            except Exception:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()[-3000:]
                time.sleep(1)
        tools = [{"type": "function", "function": schema} for schema in tool_schemas(RIG_TOOLS)]
        messages = [{"role": "user", "content": Q_CALL}]
        first = client.chat.completions.create(model="tiny", messages=messages, tools=tools, temperature=0)
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls", message
        results = run_tool_calls(message.tool_calls)
        assert json.loads(results[0]["content"])["result"]["unit"]["start_ma"] == 72.1
        messages += [message.model_dump(exclude_none=True), *results]
        final = client.chat.completions.create(model="tiny", messages=messages, tools=tools, temperature=0)
        # the model answers after seeing the result; its words are the trained model's own (never pinned)
        assert final.choices[0].message.content or final.choices[0].message.tool_calls, final
    finally:
        server.terminate()
        server.wait(timeout=60)
    # the executed call's result reached the model's context: the server's own record of the second request
    requests = server.stdout.read().decode().split("==== request ====")[1:]
    assert len(requests) == 2, requests
    assert json.dumps(results[0]["content"], ensure_ascii=False) in requests[1], requests[1]


@pytest.mark.slow
def test_tiny_tools_recipe_trains_on_geo_tools_sft(tmp_path: Path, tiny_model: Path, cli_env: dict[str, str]) -> None:
    """The shipped twin recipe: geo_tools_sft (with geosignal_demo) goes through LLaMA-Factory's sharegpt reader."""
    work = workdir(tmp_path, tiny_model)
    proc = run_cli("train", example("tiny/tiny_tools_sft.yaml"), "max_steps=1", cwd=work, env=cli_env)
    assert "Converting format of dataset" in proc.stdout + proc.stderr
    assert (work / "saves" / "tiny" / "lora" / "tools_sft" / "adapter_model.safetensors").is_file()
    # and the shipped chat twin, all seven tools offered: it loads the adapter and answers (the 1-step model calls
    # no tool; the tool loop itself is proven on the rigged model above)
    answer = chat(example("tiny/tiny_tools_chat.yaml"), "How far is Beijing from Lhasa?", cwd=work, env=cli_env)
    reference = greedy_reference(
        work / "models/tiny-mistral",
        "How far is Beijing from Lhasa?",
        template="mistral",
        max_new_tokens=64,
        adapter=work / "saves/tiny/lora/tools_sft",
        tools=json.dumps(tool_schemas(), ensure_ascii=False),  # all seven, as geo_tools: all offers them
        tool_format="default",
    )
    assert answer == reference, (answer, reference)
    rows = json.loads((Path(__file__).parents[1] / "data" / "geo_tools_sft.json").read_text(encoding="utf-8"))
    calls = [sum(t["from"] == "function_call" for t in row["conversations"]) for row in rows]
    assert {0, 1, 2} <= set(calls) and len(rows) >= 300
