"""``KafkaLogGuard`` on records shaped like kafka-python's: raw bytes shown as their size, SASL
messages as their name, secret options of a configuration masked, known secrets masked."""

from __future__ import annotations

import logging
from typing import Any

from workers.runtime.logmask import KafkaLogGuard, guard_kafka_logs, option_secrets

SECRET = "Unit-Secret-4kP9"


class SaslAuthenticateRequest:
    """Named like kafka-python's class; its repr carries the credentials, as the real one's."""

    def __repr__(self) -> str:
        return f"SaslAuthenticateRequest(auth_bytes=b'alice\\x00alice\\x00{SECRET}')"


class SaslAuthenticateRequest_v1(SaslAuthenticateRequest):  # noqa: N801 - kafka-python 2.2's
    pass


def shown(msg: Any, *args: Any, secrets: set[str] | None = None) -> str:
    record = logging.LogRecord("kafka.protocol.parser", logging.DEBUG, "p", 1, msg, args, None)
    assert KafkaLogGuard(secrets or set()).filter(record) is True  # never drops a record
    return record.getMessage()


def test_raw_bytes_are_shown_as_their_size() -> None:
    sent = f"alice\0alice\0{SECRET}".encode()

    assert shown("Send: %r", sent) == f"Send: <{len(sent)} bytes>"
    assert shown("Send: %r", bytearray(sent)) == f"Send: <{len(sent)} bytes>"
    assert shown("Recv: %s", memoryview(sent)) == f"Recv: <{len(sent)} bytes>"


def test_sasl_messages_are_shown_by_name_only() -> None:
    for request in (SaslAuthenticateRequest(), SaslAuthenticateRequest_v1()):
        text = shown("%s Request %d: %s", "<conn>", 3, request)

        assert SECRET not in text and text.startswith("<conn> Request 3: <SaslAuthenticate")
        assert "authentication data hidden" in text


def test_secret_options_of_a_logged_configuration_are_masked() -> None:
    config = {"bootstrap_servers": ["k:9092"], "sasl_plain_password": SECRET, "acks": 1}

    text = shown("Starting KafkaAdminClient with configuration: %s", config)

    assert SECRET not in text and "'sasl_plain_password': '***'" in text and "k:9092" in text
    assert config["sasl_plain_password"] == SECRET  # the client's own mapping is untouched


def test_known_secrets_are_masked_anywhere_in_the_message() -> None:
    text = shown("%s: Authenticated with %s", "<conn>", f"token {SECRET}", secrets={SECRET})

    assert text == "<conn>: Authenticated with token ***"


def test_a_message_that_is_not_a_string_is_hidden_too() -> None:
    assert shown(SaslAuthenticateRequest()).startswith("<SaslAuthenticateRequest:")
    assert shown(SECRET.encode()) == f"<{len(SECRET)} bytes>"
    assert shown(42) == "42"


def test_ordinary_records_are_left_alone() -> None:
    record = logging.LogRecord(
        "kafka.net", logging.INFO, "p", 1, "node %s at %s:%d", ("0", "h", 9), None
    )
    args = record.args

    KafkaLogGuard(set()).filter(record)

    assert record.args is args and record.getMessage() == "node 0 at h:9"


def test_installing_twice_adds_one_guard_per_logger_and_keeps_every_secret() -> None:
    logger = logging.getLogger("kafka.unit_test_guard")

    first = guard_kafka_logs({"first-secret-1"})
    second = guard_kafka_logs({"second-secret-2", ""})

    assert first is second and logger.filters.count(first) == 1
    assert logging.getLogger("kafka").filters.count(first) == 1
    assert {"first-secret-1", "second-secret-2"} <= first.secrets and "" not in first.secrets


def test_option_secrets_are_the_string_values_of_secret_options() -> None:
    options = {"sasl_plain_password": SECRET, "ssl_password": "", "acks": "all",
               "sasl_oauth_token_provider": object()}  # fmt: skip

    assert option_secrets(options) == {SECRET}
