"""Reason classes: a dead letter's free-text reason as one word of a small, fixed vocabulary.

A metric label takes only these words, whatever the reason says: its text holds offsets, sizes,
exception messages and parts of the record, and would give every dead letter a series of its
own. Unknown text is ``other``; a new refusal in the code gets a class here.
"""

from __future__ import annotations

# (prefix of the reason, class), first match wins. The prefixes are how the code words its
# reasons: ``workers.kafka.codecs`` (decoding), ``workers.pulling.handoff`` (encoding),
# ``workers.pulling.redrive`` (a batch that kept killing its worker), ``workers.stages.base``
# (a stage's isolation) and ``workers.alarms.tasks`` (events that break the schema).
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("record has no value", "tombstone"),
    ("value is not valid UTF-8", "bad_unicode"),
    ("value has a key that is not valid Unicode", "bad_unicode"),
    ("value has a string that is not valid Unicode", "bad_unicode"),
    ("value has an integer of", "integer_range"),
    ("value nests deeper than", "too_deep"),
    ("value is empty", "not_json"),
    ("value starts with a byte order mark", "not_json"),
    ("value is not valid JSON", "not_json"),
    ("value is a JSON ", "not_object"),
    ("cannot decode:", "codec"),
    ("cannot be encoded for the hand-off", "unencodable"),
    ("stage crashed:", "crashed"),
    ("stage ", "stage_error"),
    ("invalid event:", "invalid_event"),
)
# "value is N bytes; the limit is M": the only reason that starts with "value is " + a digit.
_TOO_LARGE = "value is "

REASONS: frozenset[str] = frozenset(
    {cls for _, cls in _PREFIXES} | {"too_large", "crashed", "other"}
)


def reason_class(reason: object) -> str:
    """The class of a dead letter's ``reason``: always a word of ``REASONS``."""
    if not isinstance(reason, str):
        return "other"
    if reason.startswith(_TOO_LARGE) and reason[len(_TOO_LARGE) : len(_TOO_LARGE) + 1].isdigit():
        return "too_large"
    for prefix, cls in _PREFIXES:
        if reason.startswith(prefix):
            return cls
    return "other"
