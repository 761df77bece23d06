"""The CLI wiring: every subcommand is reachable and errors are one line, not a traceback."""

from __future__ import annotations

import pytest

from streamer import cli
from streamer.commands import COMMAND_MODULES


def test_every_command_module_has_help() -> None:
    parser = cli.build_parser()
    help_text = parser.format_help()
    for module_name in COMMAND_MODULES:
        name = module_name.rsplit(".", 1)[-1]
        assert name in help_text


def test_unknown_command_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
