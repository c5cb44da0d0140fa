"""GeoBench as published, in either layout, read strictly: a malformed row is an error naming its file and row.

K2 layout (also the hub dataset ``daven3/geobench``): ``geobench_npee.json`` (six sections of parallel
``question``/``answer`` lists; multiple-choice options sit in the question text after ``Choose from:``) and
``geobench_apstudy.json`` (a list of ``{"question": {"stem", "choices"}, "answerKey"}``).
JiuZhou layout: ``objective_task_{npee,apstudy}.csv`` (no header; question, options..., answer letter; a
missing option is the literal ``Null``) and ``subjective_task.xlsx`` (one ``Questions`` column).

Malformed means unreadable: a wrong type, a missing field, an answer that is not a letter (or True/False),
an answer past the last option column. Defects of content in the published rows are not errors: such a
question is kept and counted as published, and its id is listed in results.json under ``data_issues``
(:attr:`ChoiceQuestion.issues`). K2's release has a gold letter that names no option (NPEE, twice; never
answerable), a repeated option label, empty option texts and empty stems (APStudy); JiuZhou's CSVs too.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


HUB_REPO = "daven3/geobench"
K2_FILES = ("geobench_npee.json", "geobench_apstudy.json")
JIUZHOU_FILES = ("objective_task_npee.csv", "objective_task_apstudy.csv", "subjective_task.xlsx")
LAYOUTS = {"k2": K2_FILES, "jiuzhou": JIUZHOU_FILES}
TF_LABELS = ("True", "False")
_OPTION_LINE = re.compile(r"^([A-Z])\.\s*(.*)$")


class GeoBenchDataError(ValueError):
    """A malformed GeoBench file or row."""


@dataclass(frozen=True)
class ChoiceQuestion:
    """A multiple-choice or true/false question; ``options`` keeps the published order and labels."""

    task: str
    id: int
    stem: str
    options: tuple[tuple[str, str], ...]  # (label, text); true/false questions have labels True/False, no text
    answer: str
    subject: str | None = None  # a general benchmark's subject (mapping.json key); GeoBench has none

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(label for label, _ in self.options))

    @property
    def issues(self) -> list[str]:
        """Defects of content this question was published with."""
        checks = {
            "gold_not_in_options": self.answer not in self.labels,
            "duplicate_option_labels": len(self.labels) != len(self.options),
            "empty_option_text": self.labels != TF_LABELS and any(not text for _, text in self.options),
            "empty_question": not self.stem,
        }
        return [name for name, failed in checks.items() if failed]


@dataclass(frozen=True)
class OpenQuestion:
    """A subjective question: scored against ``reference`` when there is one, by the judge otherwise."""

    task: str
    id: int
    question: str
    reference: str | None


Question = ChoiceQuestion | OpenQuestion


def resolve_task_dir(task_dir: str | None, cache_dir: str | None = None, token: str | None = None) -> Path:
    """The local GeoBench folder: ``task_dir`` itself, or the hub dataset downloaded (or found in the cache)."""
    if task_dir is not None:
        return Path(task_dir)

    import httpx
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id=HUB_REPO, repo_type="dataset", allow_patterns=list(K2_FILES), cache_dir=cache_dir, token=token
        )
    except (OSError, httpx.HTTPError) as err:  # offline without a cached copy, no network, no access
        raise GeoBenchDataError(
            f"The hub dataset `{HUB_REPO}` (the default `task_dir`) is not available: {err} "
            "Set `task_dir` to a local GeoBench folder."
        ) from None
    return Path(folder)


def detect_layout(folder: Path) -> str:
    found = {name: [f for f in files if (folder / f).is_file()] for name, files in LAYOUTS.items()}
    present = [name for name, files in found.items() if files]
    if len(present) == 1:
        return present[0]

    if not present:
        raise GeoBenchDataError(
            f"{folder} holds no GeoBench file; expected the K2 layout ({', '.join(K2_FILES)}) "
            f"or the JiuZhou layout ({', '.join(JIUZHOU_FILES)})."
        )
    raise GeoBenchDataError(f"{folder} mixes the K2 and JiuZhou layouts ({found}); point `task_dir` to one of them.")


def _fail(path: Path, where: str, problem: str) -> GeoBenchDataError:
    return GeoBenchDataError(f"{path}, {where}: {problem}")


def _string(value: Any, path: Path, where: str, what: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, where, f"{what} must be a string, got {json.dumps(value)[:80]}.")
    return value.strip()


def _text(value: Any, path: Path, where: str, what: str) -> str:
    if not _string(value, path, where, what):
        raise _fail(path, where, f"{what} is empty.")
    return value.strip()


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise GeoBenchDataError(f"{path} is not valid JSON: {err}.") from None


def _npee_section(path: Path, section: str) -> list[tuple[str, str, Any]]:
    """(where, question, answer) of one section of ``geobench_npee.json``."""
    data = _read_json(path)
    if not isinstance(data, dict) or section not in data:
        raise GeoBenchDataError(f"{path}: section `{section}` is missing.")
    part = data[section]
    if (
        not isinstance(part, dict)
        or not isinstance(part.get("question"), list)
        or not isinstance(part.get("answer"), list)
    ):
        raise GeoBenchDataError(f"{path}, section `{section}`: must hold `question` and `answer` lists.")
    if len(part["question"]) != len(part["answer"]):
        raise GeoBenchDataError(
            f"{path}, section `{section}`: {len(part['question'])} questions but {len(part['answer'])} answers."
        )
    return [(f"section `{section}`, item {i}", q, a) for i, (q, a) in enumerate(zip(part["question"], part["answer"]))]


def _parse_inline_options(text: str, path: Path, where: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    if text.count("Choose from:") != 1:
        raise _fail(path, where, "a multiple-choice question needs exactly one `Choose from:` before its options.")
    stem, block = text.split("Choose from:")
    options = []
    for line in filter(None, (line.strip() for line in block.splitlines())):
        match = _OPTION_LINE.match(line)
        if match is None:
            raise _fail(path, where, f"option line {line[:60]!r} does not start with a label such as `A.`.")
        options.append((match.group(1), match.group(2).strip()))
    if len(options) < 2:
        raise _fail(path, where, f"needs at least two options after `Choose from:`, found {len(options)}.")
    return stem.strip(), tuple(options)


def _letter(value: Any, path: Path, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Z]", value.strip()):
        raise _fail(path, where, f"the answer must be one capital letter, got {json.dumps(value)[:40]}.")
    return value.strip()


def load_npee_choice(path: Path, task: str) -> list[ChoiceQuestion]:
    questions = []
    for i, (where, question, answer) in enumerate(_npee_section(path, "choice")):
        stem, options = _parse_inline_options(_string(question, path, where, "the question"), path, where)
        questions.append(ChoiceQuestion(task, i, stem, options, _letter(answer, path, where)))
    return questions


def load_npee_tf(path: Path, task: str) -> list[ChoiceQuestion]:
    questions = []
    for i, (where, question, answer) in enumerate(_npee_section(path, "tf")):
        if answer not in TF_LABELS:
            raise _fail(path, where, f"the answer must be `True` or `False`, got {json.dumps(answer)[:40]}.")
        options = tuple((label, "") for label in TF_LABELS)
        questions.append(ChoiceQuestion(task, i, _string(question, path, where, "the question"), options, answer))
    return questions


def load_npee_open(path: Path, task: str, section: str) -> list[OpenQuestion]:
    return [
        OpenQuestion(task, i, _text(q, path, where, "the question"), _text(a, path, where, "the reference answer"))
        for i, (where, q, a) in enumerate(_npee_section(path, section))
    ]


def load_apstudy_json(path: Path, task: str) -> list[ChoiceQuestion]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise GeoBenchDataError(f"{path}: must hold a JSON list of questions.")
    questions = []
    for i, item in enumerate(data):
        where = f"item {i}"
        body = item.get("question") if isinstance(item, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise _fail(path, where, 'must be {"question": {"stem", "choices"}, "answerKey"}.')
        options = []
        for choice in body["choices"]:
            if not isinstance(choice, dict):
                raise _fail(path, where, 'each choice must be {"text", "label"}.')
            label = _letter(choice.get("label"), path, where)
            options.append((label, _string(choice.get("text"), path, where, f"choice {label}")))
        if len(options) < 2:
            raise _fail(path, where, f"needs at least two choices, found {len(options)}.")
        stem = _string(body.get("stem"), path, where, "`question.stem`")
        questions.append(ChoiceQuestion(task, i, stem, tuple(options), _letter(item.get("answerKey"), path, where)))
    return questions


def load_choice_csv(path: Path, task: str) -> list[ChoiceQuestion]:
    """JiuZhou's CSV: ``question, option A, option B, ..., answer``; ``Null`` options are dropped."""
    questions = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            where = f"row {i + 1}"
            if len(row) < 4:
                raise _fail(
                    path, where, f"needs a question, at least two options and an answer; got {len(row)} fields."
                )
            stem, *cells, answer = row
            options = []
            for label, cell in zip("ABCDEFGHIJ", cells):
                if cell.strip() == "Null":
                    continue
                options.append((label, cell.strip()))
            if len(cells) > 10 or len(options) < 2:
                raise _fail(path, where, f"needs 2 to 10 options, found {len(options)} (besides Null ones).")
            answer = _letter(answer, path, where)
            if answer not in "ABCDEFGHIJ"[: len(cells)]:
                raise _fail(path, where, f"the answer `{answer}` is past the last option column.")
            questions.append(ChoiceQuestion(task, i, stem.strip(), tuple(options), answer))
    return questions


def load_open_xlsx(path: Path, task: str) -> list[OpenQuestion]:
    """JiuZhou's ``subjective_task.xlsx``: a ``Questions`` header, then one question per row."""
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    finally:
        workbook.close()
    if not rows or not rows[0] or str(rows[0][0]).strip().lower() != "questions":
        raise GeoBenchDataError(f"{path}, row 1: the first sheet must start with a `Questions` header.")
    questions = []
    for number, row in enumerate(rows[1:], start=2):
        if all(cell is None for cell in row):  # openpyxl reports formatted but empty rows
            continue
        question = _text(row[0], path, f"row {number}", "the question")
        questions.append(OpenQuestion(task, len(questions), question, None))
    return questions
