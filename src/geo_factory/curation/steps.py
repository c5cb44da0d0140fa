"""geo-factory's own datatrove steps: normalisation, offline language id, geoscience-safe quality rules, PII.

Each is a plain datatrove ``PipelineStep`` (picklable, so the Slurm executor can ship it), and each records
``doc_len_tokens`` of what it forwards, so the report can say how many tokens every step let through.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cached_property

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.readers.base import BaseDiskReader, BaseReader
from datatrove.utils.typeshelper import StatHints
from datatrove.utils.word_tokenizers import WordTokenizer


_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3040-\u30ff\uac00-\ud7af]|[^\W_]+")
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2028\u2029\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def count_words(text: str) -> int:
    """Words, with each CJK character counted as one: the report's token unit when no tokenizer is given."""
    return len(_WORD.findall(text))


class GeoWordTokenizer(WordTokenizer):
    """Words and single CJK characters, by one regular expression: no spaCy or NLTK model to download, and
    Chinese text gets MinHash shingles too. Sentences end at ``.!?`` and their CJK forms."""

    _SENTENCE = re.compile(r"[^.!?。！？]+[.!?。！？]*")

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s.strip() for s in self._SENTENCE.findall(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._SENTENCE.finditer(text) if m.group().strip()]


def counting_adapter(reader: BaseReader, data: dict, path: str, id_in_file: int | str) -> dict:
    """A reader's adapter: datatrove's own, counting (``no_text``) the rows it then skips for want of text (no
    ``text_key`` column, or an empty one); datatrove only logs a warning for the first."""
    if not data.get(reader.text_key):
        reader.stat_update("no_text")
    return reader._default_adapter(data, path, id_in_file)


class TextFileReader(BaseDiskReader):
    """One document per .txt file (datatrove reads JSONL, Parquet, CSV, WARC, not plain text)."""

    name = "🐿 Text"

    def read_file(self, filepath: str):
        with self.data_folder.open(filepath, "r", encoding="utf-8") as f:
            document = self.get_document_from_dict({"text": f.read(), "id": filepath}, filepath, 0)
        if document:
            yield document


class TokenCounter(PipelineStep):
    """Puts ``token_count`` in each document's metadata (the given tokenizer's, else :func:`count_words`)."""

    name = "token counter"
    type = "🔢 - TOKENIZER"

    def __init__(self, tokenizer: str | None = None) -> None:
        super().__init__()
        self.tokenizer_name = tokenizer

    @cached_property
    def _tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.tokenizer_name)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                if self.tokenizer_name is None:
                    doc.metadata["token_count"] = count_words(doc.text)
                else:
                    doc.metadata["token_count"] = len(self._tokenizer(doc.text, add_special_tokens=False)["input_ids"])
            self.stat_update(StatHints.total, StatHints.forwarded)
            self.update_doc_stats(doc)
            yield doc


class _Rewriter(PipelineStep):
    """A step that rewrites text and counts the documents it changed (datatrove's formatters do not)."""

    type = "✂️ - FORMAT"

    def rewrite(self, text: str) -> str:
        raise NotImplementedError

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                text = self.rewrite(doc.text)
            self.stat_update(StatHints.total, StatHints.forwarded)
            if text != doc.text:
                self.stat_update("modified")
                doc.text = text
            self.update_doc_stats(doc)
            yield doc


class Normalizer(_Rewriter):
    """Unicode NFC (not NFKC: that would turn km² into km2 and ‰ into 0/00), invisible characters removed,
    runs of spaces collapsed, trailing spaces and more than one blank line dropped."""

    name = "normalise"

    def rewrite(self, text: str) -> str:
        text = _INVISIBLE.sub("", unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n"))
        lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
        return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class PIIRemover(_Rewriter):
    """E-mail addresses and phone numbers replaced by placeholders. Phone patterns need a ``+`` country code, a
    bracketed area code, dashes in the NANP shape or a Chinese mobile number, so coordinates, years, sample
    numbers and measurements are left alone. ``re.ASCII``: word boundaries are ASCII letters and digits, so an
    address or number directly after or before a Chinese character (``发邮件至a@b.com或致电138...``) is found;
    by Unicode's rules a CJK character is a word character and ``\b`` never matches beside it."""

    name = "pii"
    EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b", re.ASCII)
    PHONE = re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ -]?(?:\(\d{1,4}\)[ -]?)?\d{1,4}(?:[ -]\d{2,4}){1,4}"
        r"|\(\d{3}\) ?\d{3}-\d{4}|\d{3}-\d{3}-\d{4}|1[3-9]\d{9})(?!\w)",
        re.ASCII,
    )

    def __init__(self, email_replacement: str = "<email>", phone_replacement: str = "<phone>") -> None:
        super().__init__()
        self.email_replacement, self.phone_replacement = email_replacement, phone_replacement

    def rewrite(self, text: str) -> str:
        return self.PHONE.sub(self.phone_replacement, self.EMAIL.sub(self.email_replacement, text))


class LanguageFilter(BaseFilter):
    """Offline language identification with py3langid (its model ships inside the package; nothing downloads)."""

    name = "language"

    def __init__(self, languages: tuple[str, ...] = ("zh", "en"), min_score: float = 0.0, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.languages, self.min_score = tuple(languages), min_score

    @cached_property
    def _identifier(self):
        from py3langid.langid import _load_identifier

        return _load_identifier(norm_probs=True)

    @staticmethod
    def known_languages() -> set[str]:
        """The codes the detector can return: a code outside them would silently drop every document."""
        from py3langid.langid import _load_identifier

        return set(_load_identifier().nb_classes)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language, score = self._identifier.classify(doc.text)
        doc.metadata["language"], doc.metadata["language_score"] = language, round(float(score), 4)
        if language not in self.languages:
            return False, f"language_{language}"
        return score >= self.min_score or (False, "language_low_score")


class GeoGopherFilter(GopherQualityFilter):
    """Gopher's rules, loosened where geoscience text differs from web prose: tables of numbers, coordinates and
    formulas have many words without letters and short tokens. Its English stop-word and word-length rules apply
    to English documents; other languages keep the length rule (words, CJK characters counted one each)."""

    name = "quality (Gopher)"

    def __init__(self, min_doc_words: int = 50, exclusion_writer=None) -> None:
        super().__init__(
            min_doc_words=min_doc_words,
            min_avg_word_length=2,
            max_avg_word_length=12,
            max_non_alpha_words_ratio=0.5,
            exclusion_writer=exclusion_writer,
            language=GeoWordTokenizer(),
        )

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.metadata.get("language", "en") == "en":
            return super().filter(doc)
        return count_words(doc.text) >= self.min_doc_words or (False, "gopher_short_doc")


class GeoC4Filter(C4QualityFilter):
    """C4's document rules (lorem ipsum, javascript and cookie-policy boilerplate, very long words) on English
    documents; its line rules are off: they drop table rows, formulas with ``{}`` (LaTeX), lines without final
    punctuation (figure captions, coordinates) and citation marks (references)."""

    name = "quality (C4)"

    def __init__(self, exclusion_writer=None) -> None:
        super().__init__(
            exclusion_writer=exclusion_writer,
            remove_citations=False,
            filter_no_terminal_punct=False,
            min_num_sentences=-1,
            min_words_per_line=-1,
            filter_curly_bracket=False,
            language=GeoWordTokenizer(),
        )

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.metadata.get("language", "en") != "en":
            return True
        return super().filter(doc)


class StageReader(JsonlReader):
    """Reads a folder an earlier stage wrote; one left empty because the filters kept no document is an empty
    stage (datatrove's readers stop with "No files found" on it)."""

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        if self.data_folder.list_files(recursive=self.recursive, glob_pattern=self.glob_pattern):
            yield from super().run(None, rank, world_size)
