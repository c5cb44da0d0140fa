"""The one OpenAI-compatible client (``geo_factory.endpoint``) as the build-sft teacher meets it, against a stand-in
endpoint on 127.0.0.1 (the judge's side is tested in test_geobench_inputs.py and test_geobench.py)."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import run_geo_factory
from openai_standin import serving


KEY = "sk-teacher-4e1d"
PAIR = {"question": "How thick is the crust beneath Lhasa?", "answer": "About 70 km."}


@pytest.fixture
def teacher_server():
    with serving(KEY, json.dumps(PAIR)) as server:
        yield server


def test_teacher_is_checked_before_any_work_and_its_errors_are_messages(tmp_path, cli_env, teacher_server) -> None:
    """A refused key stops build-sft before it writes anything, with the option to fix; a reply that is not a chat
    completion is a message, not a traceback; a good one becomes a pair, asked with the key from the environment."""
    (tmp_path / "doc.txt").write_text("The Moho lies at 70 km depth beneath Lhasa.")
    api = teacher_server.api_base
    args = ["build-sft", "--documents", "doc.txt", "--teacher-api", api, "--teacher-model", "teacher"]
    args += ["--api-key-env", "TEACHER_KEY", "--max-tokens", "64"]

    def build(output: str, env: dict) -> subprocess.CompletedProcess:
        return run_geo_factory(*args, "--output", output, cwd=tmp_path, env=env, timeout=120, check=False)

    refused = build("refused", cli_env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip() == (
        f"geo-factory build-sft: error: The teacher at {api} refused the request (HTTP 401): check the key in "
        "$TEACHER_KEY ($TEACHER_KEY is not set), which `--api-key-env` names."
    )
    assert not (tmp_path / "refused").exists() and teacher_server.requests == []

    env = {**cli_env, "TEACHER_KEY": KEY}
    teacher_server.broken = True
    broken = build("broken", env)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr, broken.stderr
    assert broken.stderr.strip().endswith(f"The teacher at {api} did not answer like an OpenAI chat endpoint.")

    teacher_server.broken, teacher_server.requests = False, []
    build("good", env).check_returncode()
    rows = json.loads((tmp_path / "good" / "good.json").read_text())
    assert rows == [{"instruction": PAIR["question"], "input": "", "output": PAIR["answer"], "source": "doc.txt:0:0"}]
    (request,) = teacher_server.requests
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("teacher", 0.7, 64)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and KEY in p.read_text(errors="ignore")]


def test_endpoint_url_is_checked() -> None:
    from geo_factory.curation.sft import Teacher

    with pytest.raises(ValueError, match=r"^`--teacher-api: 127.0.0.1:8000/v1` must be an http:// or https:// URL\.$"):
        Teacher("127.0.0.1:8000/v1", "teacher", "TEACHER_KEY")
