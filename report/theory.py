"""The theory answers from one source, ``theory.md``, rendered two ways: Typst markup for the report and Markdown for
notebook 04, with this run's figures filled in from the report's data.

    typst_text(data), markdown_text(data, refs)

The source's dialect is described at its top. Each paragraph is rendered on its own: its conditional parts are kept or
dropped, its figures filled in (escaped for the target, so that a figure is always text, never markup), its math
converted (LaTeX for Markdown as written, Typst math for the report), its citations made (``@key`` stays a Typst
reference; Markdown gets "(Author et al. year)" from ``refs.yml``).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

SOURCE = Path(__file__).with_name("theory.md")
REFS = Path(__file__).with_name("refs.yml")

COMMENT = re.compile(r"<!--.*?-->", re.S)
CONDITION = re.compile(r"\[\[\?([^:\]]+):(.*?)\]\]", re.S)
FIGURE = re.compile(r"(?<!\{)\{([A-Za-z_][\w.]*)\}(?!\})")
MATH_FIGURE = re.compile(r"\{([A-Za-z_]\w*(?:\.\w+)+)\}")  # in math, braces group: a figure is a dotted path
MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$", re.S)
CITATION = re.compile(r"@([a-z][\w-]*[a-z0-9])")
LABEL = re.compile(r"\s*<([a-z][\w-]*)>\s*$")
SECTIONS = {"sec-sweeps": "the report's section on the size sweeps", "sec-discussion": "the report's discussion"}

# LaTeX -> Typst math, for the subset theory.md uses (anything else stops the build: see latex_to_typst)
COMMANDS = {r"\in": "in", r"\times": "times", r"\alpha": "alpha", r"\Delta": "Delta", r"\cdot": "dot",
            r"\quad": "quad", r"\ll": "<<", r"\min": "min", r"\mathbb{R}": "RR"}


def lookup(data: dict, path: str):
    """``data`` at a dotted path, or None where any step is missing."""
    value = data
    for key in path.split("."):
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def present(data: dict, path: str) -> bool:
    value = lookup(data, path)
    return value is not None and value != "" and value != [] and value != {}


def latex_to_typst(math: str) -> str:
    """``\\frac{\\alpha}{r} \\cdot B A`` -> ``(alpha)/(r) dot B A``: the commands above, ``\\text{x}`` as ``"x"``,
    braces as parentheses. Raises ValueError on any other command, so that the report never prints it raw."""
    out = re.sub(r"\\text\{([^{}]*)\}", r'"\1"', math)
    out = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", "(\\1) FRAC (\\2)", out)
    for command, typst in sorted(COMMANDS.items(), key=lambda kv: -len(kv[0])):
        out = out.replace(command, f" {typst} ")
    if "\\" in out:
        raise ValueError(f"theory.md: the math {math!r} uses a command theory.py does not convert")
    # an inline slash stays a slash (Typst's / would stack a fraction); \frac's bar is Typst's /
    out = out.replace("/", " slash ").replace(" FRAC ", " / ").replace("{", "(").replace("}", ")")
    return re.sub(r"\s+([_^])", r"\1", re.sub(r"\s+", " ", out)).strip()


def escape_typst(text: str) -> str:
    """A figure as plain text in Typst markup (its characters never start markup)."""
    return re.sub(r"([\\#$*_@<>`~\[\]/=+-])", r"\\\1", str(text))


def escape_markdown(text: str) -> str:
    return re.sub(r"([\\*_`$\[\]<>#])", r"\\\1", str(text))


def citation_text(key: str, refs: dict) -> str:
    """(First author et al. year) for a refs.yml entry; a section label in words."""
    if key in SECTIONS:
        return SECTIONS[key]
    entry = refs[key]
    authors = entry["author"] if isinstance(entry["author"], list) else [entry["author"]]
    surname = authors[0].split(",")[0]
    who = surname if len(authors) == 1 else f"{surname} and {authors[1].split(',')[0]}" if len(authors) == 2 \
        else f"{surname} et al."
    return f"({who} {entry['date']})"


def paragraphs(source: str) -> list[str]:
    """The source's blocks (headings, paragraphs, display math), each on one line."""
    text = COMMENT.sub("", source)
    return [" ".join(line.strip() for line in block.splitlines()) for block in re.split(r"\n\s*\n", text)
            if block.strip()]


def render(data: dict, target: str, refs: dict | None = None, source: str | None = None) -> str:
    """The answers as ``target`` ("typst" or "markdown") text."""
    if target not in ("typst", "markdown"):
        raise ValueError(f"target must be 'typst' or 'markdown', not {target!r}")
    escape = escape_typst if target == "typst" else escape_markdown
    refs = refs if refs is not None else yaml.safe_load(REFS.read_text(encoding="utf-8"))
    out = []
    for block in paragraphs(source if source is not None else SOURCE.read_text(encoding="utf-8")):
        block = CONDITION.sub(lambda m: m.group(2) if all(present(data, p.strip()) for p in m.group(1).split("&"))
                              else "", block)
        pieces, last = [], 0  # math and text are rendered apart: a figure inside math is escaped as math text
        for m in MATH.finditer(block):
            pieces.append(("text", block[last:m.start()]))
            pieces.append(("display" if m.group(1) else "math", m.group(1) or m.group(2)))
            last = m.end()
        pieces.append(("text", block[last:]))
        missing = [p for kind, part in pieces for p in (FIGURE if kind == "text" else MATH_FIGURE).findall(part)
                   if lookup(data, p) is None]
        if missing:
            raise KeyError(f"theory.md needs {', '.join(missing)}, which the report's data does not have")
        rendered = []
        for kind, part in pieces:
            if kind == "text":
                part = FIGURE.sub(lambda m: escape(lookup(data, m.group(1))), part)
                part = part.replace("{{", "{").replace("}}", "}")
                if target == "markdown":
                    part = CITATION.sub(lambda m: citation_text(m.group(1), refs), part)
                rendered.append(part)
            else:
                part = MATH_FIGURE.sub(lambda m: str(lookup(data, m.group(1))), part)
                if target == "typst":
                    math = latex_to_typst(part)
                    rendered.append(f"$ {math} $" if kind == "display" else f"${math}$")
                else:
                    rendered.append(f"$${part}$$" if kind == "display" else f"${part}$")
        text = "".join(rendered).strip()
        if not text:
            continue
        if text.startswith("## "):
            title, label = text[3:], None
            if found := LABEL.search(title):
                title, label = title[:found.start()], found.group(1)
            text = (f"== {title}" + (f" <{label}>" if label else "")) if target == "typst" else f"### {title}"
        out.append(text)
    return "\n\n".join(out) + "\n"


def typst_text(data: dict) -> str:
    return render(data, "typst")


def markdown_text(data: dict) -> str:
    return render(data, "markdown")
