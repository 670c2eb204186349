"""Every command of ``workers`` explains itself: the whole click tree is walked, so a new
option without help, an environment variable missing from ``--help`` or a data command
without ``--json`` fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest

from workers.cli import main
from workers.cli.base import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE

# Commands that print no data to read by a script: the demo shows progress for a person, the
# exporter serves its data over HTTP.
WITHOUT_JSON = {"workers demo", "workers exporter"}


def walk(
    command: click.Command = main, parent: click.Context | None = None, name: str = "workers"
) -> Iterator[tuple[str, click.Command, click.Context]]:
    """(path, command, its context) of the group and every command under it."""
    ctx = click.Context(command, parent=parent, info_name=name)
    yield ctx.command_path, command, ctx
    if isinstance(command, click.Group):
        for sub_name, sub in sorted(command.commands.items()):
            yield from walk(sub, ctx, sub_name)


TREE = list(walk())
IDS = [path for path, _, _ in TREE]


def test_the_walk_finds_every_command() -> None:
    assert set(IDS) == {
        "workers", "workers check", "workers demo", "workers lag", "workers produce",
        "workers topics", "workers topics create", "workers offsets", "workers offsets show",
        "workers offsets reset", "workers dlq", "workers dlq show", "workers dlq replay",
        "workers dlq resume", "workers exporter",
    }  # fmt: skip


@pytest.mark.parametrize(("path", "command", "ctx"), TREE, ids=IDS)
def test_every_command_and_option_has_help(
    path: str, command: click.Command, ctx: click.Context
) -> None:
    # Act
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option)]
    missing = [p.opts[-1] for p in options if not (p.help or "").strip()]

    # Assert
    assert (command.help or "").strip(), f"{path} has no help"
    assert "--help" in [o for p in options for o in p.opts]
    assert missing == [], f"{path}: options without help: {missing}"


@pytest.mark.parametrize(("path", "command", "ctx"), TREE, ids=IDS)
def test_every_argument_is_explained_in_its_commands_help(
    path: str, command: click.Command, ctx: click.Context
) -> None:
    # click's arguments take no help text: the command's own text names each one.
    arguments = [p for p in command.get_params(ctx) if isinstance(p, click.Argument)]

    for argument in arguments:
        name = argument.make_metavar(ctx).rstrip(".").strip("[]")
        assert name in (command.help or ""), f"{path}: {name} is not explained"


@pytest.mark.parametrize(("path", "command", "ctx"), TREE, ids=IDS)
def test_every_environment_variable_is_shown_in_help(
    path: str, command: click.Command, ctx: click.Context
) -> None:
    # Arrange
    options = [p for p in command.get_params(ctx) if isinstance(p, click.Option)]
    text = " ".join(command.get_help(ctx).split())  # unwrapped

    # Assert
    for option in options:
        names = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar or [])
        assert option.show_envvar or not names, f"{path} {option.opts[-1]} hides {names}"
        for name in names:
            shown = re.search(rf"env var: [^\]]*\b{name}\b", text)
            assert shown, f"{path} --help does not show {name}"


def test_the_group_reads_its_app_and_config_module_from_the_environment() -> None:
    ctx = click.Context(main, info_name="workers")

    text = " ".join(main.get_help(ctx).split())

    assert "[env var: WORKERS_APP; default: workers.app:app]" in text
    # Celery's own variable (what ``celery --config`` sets) first, then the package's.
    assert "[env var: CELERY_CONFIG_MODULE, WORKERS_CELERY_CONFIG]" in text


@pytest.mark.parametrize(("path", "command", "ctx"), TREE, ids=IDS)
def test_every_command_that_prints_data_takes_json(
    path: str, command: click.Command, ctx: click.Context
) -> None:
    if isinstance(command, click.Group):
        return
    flags = [o for p in command.get_params(ctx) for o in p.opts]

    assert ("--json" in flags) == (path not in WITHOUT_JSON), path


def test_exit_codes_are_distinct_and_2_stays_the_usage_error() -> None:
    codes = [EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED]

    assert codes == [0, 1, 2, 3, 130]
    assert click.UsageError("x").exit_code == EXIT_USAGE
