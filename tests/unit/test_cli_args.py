"""Global options of the admin subcommands: `--admin-url` before or after the subcommand, `$UMBRA_ADMIN_URL`."""

from __future__ import annotations

import pytest

from umbra.cli.adminapi import DEFAULT_ADMIN_URL, resolve_admin_url
from umbra.cli.main import CliError, _parser


def admin_url(argv: list[str]) -> str:
    args = _parser().parse_args(argv)
    resolve_admin_url(args)
    return str(args.admin_url)


@pytest.mark.parametrize("argv", [
    ["shadow", "--admin-url", "http://h:1", "list"],
    ["shadow", "list", "--admin-url", "http://h:1"],
    ["shadow", "status", "--admin-url", "http://h:1", "link-a"],
    ["storage", "--admin-url", "http://h:1", "status"],
    ["storage", "recover", "--admin-url", "http://h:1"],
])
def test_admin_url_before_or_after_the_subcommand(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMBRA_ADMIN_URL", "http://from-env:2")
    assert admin_url(argv) == "http://h:1"


def test_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMBRA_ADMIN_URL", "http://from-env:2")
    assert admin_url(["shadow", "list"]) == "http://from-env:2"
    monkeypatch.delenv("UMBRA_ADMIN_URL")
    assert admin_url(["storage", "status"]) == DEFAULT_ADMIN_URL


def test_an_unknown_option_is_one_line() -> None:
    with pytest.raises(CliError, match="--bogus"):
        _parser().parse_args(["shadow", "list", "--bogus", "x"])
