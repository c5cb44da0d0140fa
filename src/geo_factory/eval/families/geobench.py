"""The GeoBench family: GeoBench as published, in either layout, read strictly (a malformed row is an error
naming its file and row), with exemplars drawn from the task's other questions (GeoBench has no dev split).

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
from functools import partial
from pathlib import Path
from typing import Any

from ...hparams.checks import check_task_dir
from ..data import (
    TF_LABELS,
    ChoiceQuestion,
    EvalDataError,
    OpenQuestion,
    Question,
    as_letter,
    as_string,
    as_text,
    read_json,
    row_error,
)
from ..prompts import check_n_shot
from ..tasks import OBJECTIVE_SUITE, SUBJECTIVE_SUITE, SUITES, TASKS, Task
from .base import Binding, BoundTask, Settings, Where


HUB_REPO = "daven3/geobench"
K2_FILES = ("geobench_npee.json", "geobench_apstudy.json")
JIUZHOU_FILES = ("objective_task_npee.csv", "objective_task_apstudy.csv", "subjective_task.xlsx")
LAYOUTS = {"k2": K2_FILES, "jiuzhou": JIUZHOU_FILES}
_OPTION_LINE = re.compile(r"^([A-Z])\.\s*(.*)$")


def resolve_task_dir(
    task_dir: str | None, cache_dir: str | None = None, token: str | None = None, key: str = "task_dir"
) -> Path:
    """The local GeoBench folder: ``task_dir`` (given as ``key``) itself, or the hub dataset downloaded (or found in
    the cache)."""
    if task_dir is not None:
        return Path(task_dir)

    import httpx
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id=HUB_REPO, repo_type="dataset", allow_patterns=list(K2_FILES), cache_dir=cache_dir, token=token
        )
    except (OSError, httpx.HTTPError) as err:  # offline without a cached copy, no network, no access
        raise EvalDataError(
            f"The hub dataset `{HUB_REPO}` (the default `{key}`) is not available: {err} "
            f"Set `{key}` to a local GeoBench folder."
        ) from None
    return Path(folder)


def detect_layout(folder: Path) -> str:
    found = {name: [f for f in files if (folder / f).is_file()] for name, files in LAYOUTS.items()}
    present = [name for name, files in found.items() if files]
    if len(present) == 1:
        return present[0]

    if not present:
        raise EvalDataError(
            f"{folder} holds no GeoBench file; expected the K2 layout ({', '.join(K2_FILES)}) "
            f"or the JiuZhou layout ({', '.join(JIUZHOU_FILES)})."
        )
    raise EvalDataError(f"{folder} mixes the K2 and JiuZhou layouts ({found}); point `task_dir` to one of them.")


def _npee_section(path: Path, section: str) -> list[tuple[str, str, Any]]:
    """(where, question, answer) of one section of ``geobench_npee.json``."""
    data = read_json(path)
    if not isinstance(data, dict) or section not in data:
        raise EvalDataError(f"{path}: section `{section}` is missing.")
    part = data[section]
    if (
        not isinstance(part, dict)
        or not isinstance(part.get("question"), list)
        or not isinstance(part.get("answer"), list)
    ):
        raise EvalDataError(f"{path}, section `{section}`: must hold `question` and `answer` lists.")
    if len(part["question"]) != len(part["answer"]):
        raise EvalDataError(
            f"{path}, section `{section}`: {len(part['question'])} questions but {len(part['answer'])} answers."
        )
    return [(f"section `{section}`, item {i}", q, a) for i, (q, a) in enumerate(zip(part["question"], part["answer"]))]


def _parse_inline_options(text: str, path: Path, where: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    if text.count("Choose from:") != 1:
        raise row_error(path, where, "a multiple-choice question needs exactly one `Choose from:` before its options.")
    stem, block = text.split("Choose from:")
    options = []
    for line in filter(None, (line.strip() for line in block.splitlines())):
        match = _OPTION_LINE.match(line)
        if match is None:
            raise row_error(path, where, f"option line {line[:60]!r} does not start with a label such as `A.`.")
        options.append((match.group(1), match.group(2).strip()))
    if len(options) < 2:
        raise row_error(path, where, f"needs at least two options after `Choose from:`, found {len(options)}.")
    return stem.strip(), tuple(options)


def load_npee_choice(path: Path, task: str) -> list[ChoiceQuestion]:
    questions = []
    for i, (where, question, answer) in enumerate(_npee_section(path, "choice")):
        stem, options = _parse_inline_options(as_string(question, path, where, "the question"), path, where)
        questions.append(ChoiceQuestion(task, i, stem, options, as_letter(answer, path, where)))
    return questions


def load_npee_tf(path: Path, task: str) -> list[ChoiceQuestion]:
    questions = []
    for i, (where, question, answer) in enumerate(_npee_section(path, "tf")):
        if answer not in TF_LABELS:
            raise row_error(path, where, f"the answer must be `True` or `False`, got {json.dumps(answer)[:40]}.")
        options = tuple((label, "") for label in TF_LABELS)
        questions.append(ChoiceQuestion(task, i, as_string(question, path, where, "the question"), options, answer))
    return questions


def load_npee_open(path: Path, task: str, section: str) -> list[OpenQuestion]:
    return [
        OpenQuestion(task, i, as_text(q, path, where, "the question"), as_text(a, path, where, "the reference answer"))
        for i, (where, q, a) in enumerate(_npee_section(path, section))
    ]


def load_apstudy_json(path: Path, task: str) -> list[ChoiceQuestion]:
    data = read_json(path)
    if not isinstance(data, list):
        raise EvalDataError(f"{path}: must hold a JSON list of questions.")
    questions = []
    for i, item in enumerate(data):
        where = f"item {i}"
        body = item.get("question") if isinstance(item, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise row_error(path, where, 'must be {"question": {"stem", "choices"}, "answerKey"}.')
        options = []
        for choice in body["choices"]:
            if not isinstance(choice, dict):
                raise row_error(path, where, 'each choice must be {"text", "label"}.')
            label = as_letter(choice.get("label"), path, where)
            options.append((label, as_string(choice.get("text"), path, where, f"choice {label}")))
        if len(options) < 2:
            raise row_error(path, where, f"needs at least two choices, found {len(options)}.")
        stem = as_string(body.get("stem"), path, where, "`question.stem`")
        questions.append(ChoiceQuestion(task, i, stem, tuple(options), as_letter(item.get("answerKey"), path, where)))
    return questions


def load_choice_csv(path: Path, task: str) -> list[ChoiceQuestion]:
    """JiuZhou's CSV: ``question, option A, option B, ..., answer``; ``Null`` options are dropped."""
    questions = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            where = f"row {i + 1}"
            if len(row) < 4:
                raise row_error(
                    path, where, f"needs a question, at least two options and an answer; got {len(row)} fields."
                )
            stem, *cells, answer = row
            options = []
            for label, cell in zip("ABCDEFGHIJ", cells):
                if cell.strip() == "Null":
                    continue
                options.append((label, cell.strip()))
            if len(cells) > 10 or len(options) < 2:
                raise row_error(path, where, f"needs 2 to 10 options, found {len(options)} (besides Null ones).")
            answer = as_letter(answer, path, where)
            if answer not in "ABCDEFGHIJ"[: len(cells)]:
                raise row_error(path, where, f"the answer `{answer}` is past the last option column.")
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
        raise EvalDataError(f"{path}, row 1: the first sheet must start with a `Questions` header.")
    questions = []
    for number, row in enumerate(rows[1:], start=2):
        if all(cell is None for cell in row):  # openpyxl reports formatted but empty rows
            continue
        question = as_text(row[0], path, f"row {number}", "the question")
        questions.append(OpenQuestion(task, len(questions), question, None))
    return questions


LOADERS = {
    ("geobench_npee", "k2"): load_npee_choice,
    ("geobench_npee", "jiuzhou"): load_choice_csv,
    ("geobench_npee_tf", "k2"): load_npee_tf,
    ("geobench_apstudy", "k2"): load_apstudy_json,
    ("geobench_apstudy", "jiuzhou"): load_choice_csv,
    **{
        (f"geobench_npee_{section}", "k2"): partial(load_npee_open, section=section)
        for section in ("noun", "completion", "qa", "discussion")
    },
    ("geobench_open", "jiuzhou"): load_open_xlsx,
}
NO_DEV_SPLIT = (
    "GeoBench has no dev split: the few-shot exemplars of a question are drawn (by `seed`) from the same task, "
    "excluding the question itself and exact duplicates of it."
)


class GeoBenchTask(BoundTask):
    family = "geobench"

    def load(self) -> list[Question]:
        path = self.folder / self.file
        if not path.is_file():
            raise EvalDataError(f"`{self.name}` reads {path}, which does not exist.")
        questions = LOADERS[self.task.name, self.layout](path, self.name)
        if not questions:
            raise EvalDataError(f"{path} holds no `{self.name}` question.")
        return questions

    def notes(self) -> list[str]:
        return [NO_DEV_SPLIT] if self.objective else []

    @classmethod
    def check(cls, members: list[BoundTask]) -> None:
        if members:
            settings = members[0].settings
            objective = {m.name: m.questions for m in members if m.objective}
            check_n_shot(settings.n_shot_key, settings.n_shot, objective)


def expand(names: list[str], layout: str, folder: Path) -> list[Task]:
    """The tasks ``names`` stand for in this layout: suites keep the members it has, named tasks must exist."""
    tasks: dict[str, Task] = {}
    for name in names:
        if name in SUITES:
            members = [TASKS[member] for member in SUITES[name] if layout in TASKS[member].files]
            if not members:
                raise EvalDataError(f"{folder} ({layout} layout) has no task of the `{name}` suite.")
            tasks.update((task.name, task) for task in members)
        elif layout not in TASKS[name].files:
            where = ", ".join(f"{task_layout} layout: {file}" for task_layout, file in TASKS[name].files.items())
            raise EvalDataError(f"`{name}` is not part of the {layout} layout in {folder} (it is in the {where}).")
        else:
            tasks[name] = TASKS[name]
    return list(tasks.values())


def absent(names: list[str], layout: str) -> dict[str, str]:
    """Members of the suites in ``names`` that this layout lacks, and why: said in the table and results.json."""
    missing = {}
    for name in names:
        for member in SUITES.get(name, ()):
            if layout not in TASKS[member].files:
                where = ", ".join(f"the {other} layout ({file})" for other, file in TASKS[member].files.items())
                missing[member] = f"not part of the {layout} layout (it is in {where}): not scored"
    return missing


def bind(names: list[str], settings: Settings, where: Where) -> Binding:
    """GeoBench's tasks of ``names`` (a suite takes what the layout has), K2's protocol on the objective ones when
    its exemplar files are set (``prompt_style: k2``)."""
    from .k2 import VARIANTS, K2Task

    key, task_dir = where.dirs["geobench"]
    check_task_dir(key, task_dir)
    folder = resolve_task_dir(task_dir, where.cache_dir, where.token, key)
    layout = detect_layout(folder)
    bound: list[BoundTask] = []
    for task in expand(names, layout, folder):
        if settings.k2_samples and task.objective:
            bound += [K2Task(task, settings, folder, layout, variant) for variant in VARIANTS]
        else:
            bound.append(GeoBenchTask(task, settings, folder, layout))
    return Binding(bound, folder, layout, absent(names, layout))


def load_all(
    task_dir: str | None, cache_dir: str | None = None, token: str | None = None
) -> dict[str, list[Question]]:
    """Every GeoBench question of the folder (or the hub dataset), by task, from the files it holds: what
    decontamination guards against."""
    settings = Settings(n_shot=0, seed=0, lang=None, max_samples=None)
    where = Where({"geobench": ("task_dir", task_dir)}, cache_dir, token)
    bound = bind([OBJECTIVE_SUITE, SUBJECTIVE_SUITE], settings, where).tasks
    return {task.name: task.questions for task in bound if (task.folder / task.file).is_file()}
