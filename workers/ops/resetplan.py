"""Reset plans as CSV, the form of kafka-consumer-groups' ``--export`` and ``--from-file``.

One line per partition, ``topic,partition,offset``, no header: what kafka-consumer-groups
writes for one group, so plans pass between the two tools. A pipeline over many topics takes
lines of any of the topics it reads now (``parse_plans``). Reading also takes its multi-group
form ``group,topic,partition,offset`` (the group must be the pipeline's), a header line of
either form, blank lines, CRLF line ends and a UTF-8 byte order mark. Any other line stops
the whole plan with a ``PlanError`` naming the line: nothing of a bad plan is applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import IO

from workers.config.masking import clip, shown
from workers.state.offsets import MAX_OFFSET

# A plan names each partition once: a few dozen bytes per partition. Larger input is no plan.
MAX_PLAN_BYTES = 16 << 20
HEADERS = ("topic,partition,offset", "group,topic,partition,offset")
_DIGITS = re.compile(r"[0-9]{1,20}", re.ASCII)


class PlanError(ValueError):
    """A plan that cannot be applied; the message names the file and the first bad line."""


def export_plan(topic: str, offsets: Iterable[tuple[int, int]]) -> str:
    """``topic,partition,offset`` lines for (partition, offset) pairs, in partition order."""
    return "".join(f"{topic},{p},{o}\n" for p, o in sorted(offsets))


def read_plan_text(stream: IO[bytes], where: str) -> str:
    """The text of a plan file: UTF-8 (a byte order mark is dropped), at most
    ``MAX_PLAN_BYTES``."""
    data = stream.read(MAX_PLAN_BYTES + 1)
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(f"{where} is larger than {MAX_PLAN_BYTES:,} bytes: it is no reset plan")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PlanError(f"{where} line {line}: not UTF-8 text (byte {exc.start})") from None


def parse_plan(
    text: str, where: str, topic: str, group: str, partitions: Sequence[int]
) -> dict[int, int]:
    """The offset per partition a plan sets. ``partitions``: the topic's. Every line is
    checked; the first bad one is raised (with the count of the others), so a plan is applied
    whole or not at all."""
    return parse_plans(text, where, {topic: partitions}, group)[topic]


def parse_plans(
    text: str, where: str, topics: Mapping[str, Sequence[int]], group: str, source: str = ""
) -> dict[str, dict[int, int]]:
    """The offset per topic and partition a plan sets, for a pipeline that reads ``topics``
    (each with its partitions); ``source`` describes them for a pipeline over many topics
    (``PipelineConfig.source``), empty for a pipeline of one. Checked as ``parse_plan``;
    only the topics the plan names are in the result."""
    known = {t: set(parts) for t, parts in topics.items()}
    if source:
        wrong = f"is not one of the pipeline's topics now ({clip(source, 120)})"
    else:
        wrong = f"is not the pipeline's topic {next(iter(topics))!r}"
    plan: dict[str, dict[int, int]] = {}
    first_line: dict[tuple[str, int], int] = {}
    problems: list[str] = []
    header_allowed = True
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip(" \t")
        if not line:
            continue
        if header_allowed and line.replace(" ", "").lower() in HEADERS:
            header_allowed = False
            continue
        header_allowed = False
        problem = _check(line, wrong, group, known, plan, first_line, number)
        if problem:
            problems.append(f"{where} line {number}: {problem}")
    if problems:
        more = f" (and {len(problems) - 1} more bad line(s))" if len(problems) > 1 else ""
        raise PlanError(problems[0] + more)
    if not plan:
        raise PlanError(f"{where} holds no offsets; expected lines of topic,partition,offset")
    return plan


def _check(line: str, wrong: str, group: str, known: Mapping[str, set[int]],
           plan: dict[str, dict[int, int]], first_line: dict[tuple[str, int], int],
           number: int) -> str:  # fmt: skip
    """What is wrong with one line (empty: nothing; its offset is then added to ``plan``).
    ``wrong`` ends the message of a topic not in ``known``."""
    fields = [f.strip(" \t") for f in line.split(",")]
    if len(fields) == 4:
        if fields[0] != group:
            return f"group {_q(fields[0])} is not the pipeline's group {group!r}"
        fields = fields[1:]
    elif len(fields) != 3:
        return (f"{len(fields)} field(s) in {_q(line)}; expected topic,partition,offset "
                "(or group,topic,partition,offset)")  # fmt: skip
    topic, partition_text, offset_text = fields
    if topic not in known:
        return f"topic {_q(topic)} {wrong}"
    if not _DIGITS.fullmatch(partition_text):
        return f"partition {_q(partition_text)} is not a partition number"
    partition = int(partition_text)
    if partition not in known[topic]:
        last = max(known[topic], default=0)
        has = f"partitions 0-{last}" if last else "only partition 0"
        return f"{topic!r} has no partition {partition} (it has {has})"
    if not _DIGITS.fullmatch(offset_text) or int(offset_text) > MAX_OFFSET:
        return f"offset {_q(offset_text)} is not an offset (an integer from 0 to {MAX_OFFSET})"
    if (topic, partition) in first_line:
        again = "partition" if len(known) == 1 else f"{topic!r} partition"
        return f"{again} {partition} again (first on line {first_line[(topic, partition)]})"
    plan.setdefault(topic, {})[partition] = int(offset_text)
    first_line[(topic, partition)] = number
    return ""


def _q(text: str) -> str:
    """A value from the file as a message shows it: quoted, escaped, at most 60 characters."""
    return shown(text, 60)
