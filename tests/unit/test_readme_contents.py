"""The README's table of contents lists its ``##`` sections in order, and every ``#anchor``
link in it leads to a heading, by GitHub's rules for heading anchors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_TOC_ITEM = re.compile(r"^(\s*)[-*] \[([^\]]+)\]\(#([^)\s]+)\)\s*$")
_ANCHOR_LINK = re.compile(r"\]\(#([^)\s]*)\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def prose(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fenced = [], None
    for number, line in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(line)
        if fence and (fenced is None or fence.group(1) == fenced):
            fenced = fence.group(1) if fenced is None else None
            continue
        if fenced is None:
            lines.append((number, line))
    return lines


def plain(markdown: str) -> str:
    """The text GitHub renders of inline markdown: code spans, links and emphasis unwrapped."""
    text = _CODE_SPAN.sub(lambda m: m.group(2).strip(), markdown)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"(\*\*|__|\*)(.+?)\1", r"\2", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (except ``-`` and
    ``_``), each space a hyphen."""
    kept = "".join(ch for ch in plain(heading).lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def headings(text: str) -> list[tuple[int, str, str]]:
    """(level, text, anchor) of every heading; repeated anchors get ``-1``, ``-2``, ... as on
    GitHub."""
    seen: dict[str, int] = {}
    out = []
    for _, line in prose(text):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.append((len(m.group(1)), m.group(2), base if count == 0 else f"{base}-{count}"))
    return out


def table_of_contents(text: str) -> list[tuple[int, str, str]]:
    """(indent, text, anchor) of the link list before the first ``##`` heading."""
    items = []
    for _, line in prose(text):
        if line.startswith("## "):
            break
        m = _TOC_ITEM.match(line)
        if m:
            items.append((len(m.group(1)), m.group(2), m.group(3)))
    return items


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Delivery guarantees", "delivery-guarantees"),
        ("`KafkaQueue`: the origin's API", "kafkaqueue-the-origins-api"),
        ("Operating it: the `workers` command", "operating-it-the-workers-command"),
        ("`redis_offset=False`", "redis_offsetfalse"),
        ("Common options (cluster level)", "common-options-cluster-level"),
        ("Dead-letter brake", "dead-letter-brake"),
        ("A -- B", "a----b"),
        ("**Bold** and [a link](https://example.com)", "bold-and-a-link"),
    ],
)
def test_slugs_follow_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_repeated_headings_get_numbered_anchors() -> None:
    text = "# T\n\n## Start\n\n### Start\n\n```\n## Start\n```\n\n## Start\n"

    assert [a for _, _, a in headings(text)] == ["t", "start", "start-1", "start-2"]


def test_the_table_of_contents_lists_every_section_in_order() -> None:
    text = README.read_text()
    sections = [(title, anchor) for level, title, anchor in headings(text) if level == 2]
    contents = table_of_contents(text)
    top = [(title, anchor) for indent, title, anchor in contents if indent == 0]

    assert contents, "no table of contents before the first section"
    assert top == sections
    # Nested entries, if any, are subsections of the section they are listed under.
    section: str | None = None
    subsections: dict[str, list[str]] = {}
    for level, _, anchor in headings(text):
        if level == 2:
            section = anchor
        elif level == 3 and section:
            subsections.setdefault(section, []).append(anchor)
    parent = None
    for indent, title, anchor in contents:
        if indent == 0:
            parent = anchor
        else:
            assert parent and anchor in subsections.get(parent, []), (title, anchor)


def test_the_contents_come_after_the_opening_commands() -> None:
    lines = README.read_text().splitlines()

    assert lines[0].startswith("# ")
    assert (
        lines[2] == "```sh"
        and lines[3].startswith("make demo")
        and lines[4].startswith("make test")
    )
    first_item = next(i for i, line in enumerate(lines) if _TOC_ITEM.match(line))
    assert first_item > 5


def test_every_anchor_link_leads_to_a_heading() -> None:
    text = README.read_text()
    anchors = {anchor for _, _, anchor in headings(text)}
    broken = [
        f"line {number}: #{target}"
        for number, line in prose(text)
        for target in _ANCHOR_LINK.findall(_CODE_SPAN.sub("", line))
        if target not in anchors
    ]

    assert broken == []
