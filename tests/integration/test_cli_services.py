"""Services that are down, or that accept connections and never answer, against the real Redis
and broker: ``workers`` reports each in one line within ``--timeout`` (plus the start of a
Python process), exit code 1; and no password appears in any output, whatever the URL's form.

Silent services are a socket server in a thread (``cli_support.silent_server``); the command
runs in a child process so that a hang fails the test at its deadline instead of blocking it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.cli_support import Cli, pipeline, run_command, silent_server, write_module
from tests.integration.conftest import TopicFactory
from workers.testing import free_port

pytestmark = pytest.mark.integration

TIMEOUT = 2.0
# Starting Python and importing Celery and kafka-python, on a busy machine.
STARTUP = 6.0


def module_of(tmp: Path, conf: dict[str, Any]) -> str:
    return write_module(tmp, "".join(f"{k} = {v!r}\n" for k, v in conf.items()))


def problems(err: str) -> list[str]:
    """The problem lines of ``workers check``, which must hold every line of stderr."""
    lines = err.splitlines()
    assert "Traceback" not in err and lines[:2] == ["", lines[1]], err
    assert lines[1].endswith(" problem(s):") and all(x.startswith("- ") for x in lines[2:]), err
    return lines[2:]


@pytest.fixture
def live(cli: Cli, new_topic: TopicFactory) -> Iterator[dict[str, Any]]:
    """The test's configuration with pipeline ``p`` on a topic that exists (and its DLQ); the
    broker URL is restored afterwards (the ``cli`` fixture cleans up through it)."""
    topic = new_topic(1)
    new_topic(1, name=f"{topic}.dlq")
    cli.conf["workers_pipelines"] = {"p": pipeline(topic)}
    broker = cli.conf["broker_url"]
    yield cli.conf
    cli.conf["broker_url"] = broker


@pytest.mark.parametrize("service", ["redis", "broker", "kafka"])
def test_check_reports_a_silent_service_within_the_timeout(
    live: dict[str, Any], tmp_path: Path, service: str
) -> None:
    with silent_server() as port:
        # Arrange
        if service == "redis":
            live["workers_redis_url"] = f"redis://127.0.0.1:{port}/0"
        elif service == "broker":
            live["broker_url"] = f"redis://127.0.0.1:{port}/0"
        else:
            live["workers_kafka_clusters"]["test"]["bootstrap_servers"] = [f"127.0.0.1:{port}"]
        name = module_of(tmp_path, live)

        # Act
        ran = run_command(tmp_path, "--config", name, "--timeout", str(TIMEOUT), "check",
                          timeout=TIMEOUT + STARTUP + 30)  # fmt: skip

    # Assert
    expected = {
        "redis": f"- redis redis://127.0.0.1:{port}/0: no answer within 2 s",
        "broker": f"- celery broker redis://127.0.0.1:{port}/0: no answer within 2 s",
        "kafka": f"- cluster test 127.0.0.1:{port}: cannot reach any bootstrap server",
    }[service]
    found = problems(ran.err)
    assert [line for line in found if line.startswith(expected)], ran.err
    assert ran.code == 1
    assert ran.seconds < TIMEOUT + STARTUP, f"took {ran.seconds:.1f} s"


@pytest.mark.parametrize(
    ("service", "args"),
    [
        ("redis", ("offsets", "show", "p")),
        ("redis", ("offsets", "reset", "p", "--to", "earliest", "--yes")),
        ("kafka", ("lag", "p")),
        ("kafka", ("produce", "some-topic", "--cluster", "test")),
    ],
)
def test_a_command_on_a_silent_service_ends_in_one_line_within_the_timeout(
    live: dict[str, Any], tmp_path: Path, service: str, args: tuple[str, ...]
) -> None:
    with silent_server() as port:
        # Arrange: a configured Redis timeout far beyond --timeout, which bounds the wait
        live["workers_redis_socket_timeout"] = 60
        if service == "redis":
            live["workers_redis_url"] = f"redis://127.0.0.1:{port}/0"
        else:
            live["workers_kafka_clusters"]["test"]["bootstrap_servers"] = [f"127.0.0.1:{port}"]
        name = module_of(tmp_path, live)

        # Act
        ran = run_command(tmp_path, "--config", name, "--timeout", str(TIMEOUT), *args,
                          timeout=TIMEOUT + STARTUP + 30)  # fmt: skip

    # Assert: one error line (lag lists a pipeline it cannot read on stdout, like the others)
    errors = [x for x in (ran.err + ran.out).splitlines() if x.startswith(("Error: ", "error: "))]
    assert "Traceback" not in ran.err and len(errors) == 1, ran.out + ran.err
    assert not ran.err.strip() or ran.err.strip() == errors[0]
    assert ran.code == 1
    assert ran.seconds < 2 * TIMEOUT + STARTUP, f"took {ran.seconds:.1f} s"


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("workers_redis_url", "- redis redis://127.0.0.1:{port}/0: unreachable: "),
        ("broker_url", "- celery broker redis://127.0.0.1:{port}/0: unreachable: "),
    ],
)
def test_check_reports_a_service_that_is_down(
    cli: Cli, live: dict[str, Any], setting: str, says: str
) -> None:
    # Arrange
    port = free_port()
    live[setting] = f"redis://127.0.0.1:{port}/0"

    # Act
    result = cli("--timeout", "1", "check")

    # Assert
    assert [x for x in problems(result.stderr) if x.startswith(says.format(port=port))]
    assert result.exit_code == 1


# -- secrets ---------------------------------------------------------------------------------------

PW = "s3cr3t-Kq7vZ"
ENCODED = "p@ss:w/rd-Kq7vZ"
FORMS = {
    "empty-user": "redis://:{pw}@127.0.0.1:{port}/0",
    "user-and-password": "redis://alice:{pw}@127.0.0.1:{port}/0",
    "password-as-user": "redis://{pw}@127.0.0.1:{port}/0",
    "tls": "rediss://:{pw}@127.0.0.1:{port}/0",
    "url-encoded": "redis://:" + quote(ENCODED, safe="") + "@127.0.0.1:{port}/0",
    "query": "redis://127.0.0.1:{port}/0?password={pw}",
}
BROKER_FORMS = {
    **FORMS,
    "amqp": "amqp://alice:{pw}@127.0.0.1:{port}//",
    "sentinel": "sentinel://:{pw}@127.0.0.1:{port};sentinel://:{pw}@127.0.0.1:{port2}",
    "failover-list": ["redis://:{pw}@127.0.0.1:{port}/0", "redis://:{pw}@127.0.0.1:{port2}/0"],
}


def _form(template: Any, pw: str) -> Any:
    ports = {"port": free_port(), "port2": free_port()}
    if isinstance(template, list):
        return [t.format(pw=pw, **ports) for t in template]
    return template.format(pw=pw, **ports)


def _assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, text
    assert "***" in text, text


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_check_masks_a_redis_password_in_every_url_form(
    cli: Cli, live: dict[str, Any], form: str, as_json: bool
) -> None:
    # Arrange
    live["workers_redis_url"] = _form(FORMS[form], PW)

    # Act
    result = cli("--timeout", "1", "check", *(["--json"] if as_json else []))

    # Assert
    _assert_hidden(result.stdout + result.stderr, PW, ENCODED, quote(ENCODED, safe=""))
    if as_json:
        assert json.loads(result.stdout)["ok"] is False
    assert result.exit_code == 1


@pytest.mark.parametrize("form", sorted(BROKER_FORMS))
def test_check_masks_a_broker_password_in_every_url_form(
    cli: Cli, live: dict[str, Any], form: str
) -> None:
    # Arrange
    live["broker_url"] = _form(BROKER_FORMS[form], PW)

    # Act
    text = cli("--timeout", "1", "check")
    as_json = cli("--timeout", "1", "check", "--json")

    # Assert
    for result in (text, as_json):
        _assert_hidden(result.stdout + result.stderr, PW, ENCODED, quote(ENCODED, safe=""))
        assert result.exit_code == 1


def test_no_secret_reaches_the_log_lines_of_vv(live: dict[str, Any], tmp_path: Path) -> None:
    # Arrange
    live["workers_redis_url"] = _form(FORMS["password-as-user"], PW + "1")
    live["broker_url"] = _form(FORMS["url-encoded"], PW)
    live["workers_kafka_clusters"]["test"].update(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username="op"
    )
    name = module_of(tmp_path, live)
    env = {"WORKERS_KAFKA_TEST_SASL_PLAIN_PASSWORD": PW + "2"}

    # Act
    ran = run_command(tmp_path, "--config", name, "--timeout", "1", "-vv", "check", env=env,
                      timeout=120)  # fmt: skip

    # Assert
    _assert_hidden(ran.out + ran.err, PW, ENCODED, quote(ENCODED, safe=""))
    assert "INFO kafka" in ran.err  # the log lines were there to be checked
    assert ran.code == 1
