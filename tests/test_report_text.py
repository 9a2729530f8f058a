"""The committed report read as a grader reads it, from the PDF's own text: at most ten pages, no sentence said
twice, no work-in-progress wording, no internal name of a setting."""

import re
from collections import Counter
from pathlib import Path

from pypdf import PdfReader

PDF = Path(__file__).resolve().parents[1] / "report" / "report.pdf"


def page_texts(path: Path = PDF) -> list[str]:
    return [page.extract_text() for page in PdfReader(path).pages]


def sentences(pages: list[str]) -> list[str]:
    """The running text's sentences of at least eight words, each as a key of its letters and digits only (so that a
    word broken at a line end and the same word whole compare equal): each page's running header and page number
    dropped, table rows (lines of mostly numbers) left out, a heading ("10 Conclusion") ending a sentence."""
    lines = []
    for text in pages:
        for line in text.splitlines()[1:]:  # the first line is the running header (or the title)
            digits = sum(c.isdigit() for c in line)
            if digits > 0.4 * max(len(line), 1) or re.fullmatch(r"\s*\d+ / \d+\s*", line):
                continue
            lines.append(line.strip())
    text = re.sub(r"\s+", " ", " ".join(lines))
    parts = re.split(r"(?<=[.!?:])\s+(?=[A-Z]|\d+(?:\.\d+)* [A-Z])", text)
    return [re.sub(r"[^a-z0-9]", "", p.lower()) for p in parts if len(p.split()) >= 8]


def test_the_report_is_at_most_ten_pages():
    assert len(page_texts()) <= 10


def test_no_sentence_is_said_twice():
    counts = Counter(sentences(page_texts()))
    assert [s for s, n in counts.items() if n > 1] == []


def test_the_sentence_splitter_finds_a_repeat_when_there_is_one():
    """The check above could pass by splitting nothing: it finds a sentence said on two pages."""
    said = "Every method ends with a lower loss on its training documents than on the validation ones."
    pages = ["header\n" + said + " Another sentence follows here with enough words in it.", "header\n" + said]
    counts = Counter(sentences(pages))
    assert max(counts.values()) == 2 and len(counts) == 2


def test_no_work_in_progress_wording_and_no_internal_names():
    text = re.sub(r"\s+", " ", " ".join(page_texts()))
    for phrase in ("so far", "not yet run", "until they are", "is to get", "continues where it stopped",
                   "notebooks' settings", "notebooks’ settings", "profile smollm2"):
        assert phrase not in text, phrase
    # "not tuned yet" is the one honest exception, and only while a method's grid is open (its row marked †)
    assert ("not tuned yet" in text) == ("†" in text)


def test_the_readme_leads_with_the_reports_table_and_conclusion(committed_report_data):
    """README.md's results block is what make report writes from results/ now: the same table and ranking as the
    report, never a hand-kept copy."""
    from report.build import README, README_END, README_START, readme_block

    text = README.read_text(encoding="utf-8")
    block = text[text.index(README_START):text.index(README_END) + len(README_END)]
    assert block == readme_block(committed_report_data)
    assert committed_report_data["comparison"]["table"]["rows"][0][0] in block  # the table is in it, not only markers
