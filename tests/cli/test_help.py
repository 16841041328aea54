"""``--help`` and ``--version``: every option's default, the columns each command reads."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import skdeita
from skdeita.cli import build_parser, main


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _help_of(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help line argparse prints for ``action``, defaults expanded."""
    return " ".join(parser._get_formatter()._expand_help(action).split())


def _options(parser):
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            yield action


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_that_states_its_default(command):
    parser = _subcommands()[command]
    for action in _options(parser):
        text = _help_of(parser, action)
        name = "/".join(action.option_strings)
        assert text, f"{command} {name} has no help"
        if action.required or action.nargs == 0:  # a required option or a flag
            continue
        assert "default" in text, f"{command} {name}: {text!r} states no default"
        if action.default is not None:
            assert str(action.default) in text, f"{command} {name}: {text!r}"


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_help_pages_show_no_empty_default(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    page = capsys.readouterr().out
    assert "(default: None)" not in page and "(default: False)" not in page
    assert "usage: skdeita " + command in page


def test_select_help_says_which_columns_the_input_needs(capsys):
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    page = capsys.readouterr().out
    needs = page.split("Columns the input needs:")[1].split("options:")[0]
    for name in ("evol_instruction_score", "evol_response_score", "--embedding-col"):
        assert name in needs
    assert "--instruction-col" in needs and "--messages-col" in needs  # the texts to embed
    assert "skdeita curate" in needs  # where missing scores come from


def test_curate_help_says_which_columns_the_input_needs(capsys):
    with pytest.raises(SystemExit):
        main(["curate", "--help"])
    page = capsys.readouterr().out
    needs = page.split("Columns the input needs:")[1].split("options:")[0]
    for name in ("instruction", "response", "--instruction-col", "--response-col"):
        assert name in needs
    assert "--messages-col" in needs and "--text-template" in needs


def test_version_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"skdeita {skdeita.__version__}"


def test_version_from_the_installed_command():
    done = subprocess.run(
        [sys.executable, "-m", "skdeita", "--version"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"skdeita {skdeita.__version__}"
