"""Global options: `--admin-url` (and the admin API's other options) before the command, between it and its
subcommand or after it, `$UMBRA_ADMIN_URL` below an explicit flag; `--version` anywhere; bad ones are one line."""

from __future__ import annotations

import re

import pytest

from umbra.cli.adminapi import DEFAULT_ADMIN_URL, AdminEndpoint, AdminError, resolve_admin_url
from umbra.cli.main import CliError, _parser, main


def admin_url(argv: list[str]) -> str:
    args = _parser().parse_args(argv)
    resolve_admin_url(args)
    return str(args.admin_url)


@pytest.mark.parametrize("argv", [
    ["--admin-url", "http://h:1", "shadow", "list"],
    ["--admin-url=http://h:1", "cluster", "status", "--format", "json"],
    ["shadow", "create", "--config", "x.yaml", "--admin-url", "http://h:1"],
    ["shadow", "failover", "dr", "--all", "--admin-url", "http://h:1", "--wait"],
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


def test_the_last_admin_url_on_the_line_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UMBRA_ADMIN_URL", raising=False)
    assert admin_url(["--admin-url", "http://first:1", "shadow", "list", "--admin-url", "http://last:2"]) == \
        "http://last:2"


@pytest.mark.parametrize("before", [True, False])
def test_every_admin_option_goes_before_or_after(before: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UMBRA_PASSWORD", "secret")
    options = ["--admin-url", "https://h:1", "--user", "alice", "--ca-file", "ca.pem", "--cert-file", "c.pem",
               "--key-file", "k.pem"]
    argv = [*options, "storage", "status"] if before else ["storage", "status", *options]
    args = _parser().parse_args(argv)
    resolve_admin_url(args)
    assert args.admin_url == AdminEndpoint("https://h:1", "alice", "secret", "ca.pem", "c.pem", "k.pem")


# An empty $UMBRA_ADMIN_URL is as good as unset, so "" is only a bad flag.
@pytest.mark.parametrize(("source", "url"), [(source, url) for source in ("flag", "environment")
                                             for url in ("h:1", "ftp://h:1", "http://", "")
                                             if url or source == "flag"])
def test_a_url_that_is_not_http_is_named(source: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if source == "flag":
        monkeypatch.delenv("UMBRA_ADMIN_URL", raising=False)
        argv, named = ["shadow", "list", "--admin-url", url], "--admin-url"
    else:
        monkeypatch.setenv("UMBRA_ADMIN_URL", url)
        argv, named = ["shadow", "list"], "$UMBRA_ADMIN_URL"
    with pytest.raises(AdminError, match=f"^{re.escape(named)} '{re.escape(url)}': expected http"):
        admin_url(argv)


def test_admin_options_before_another_command_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--admin-url", "http://h:1", "user", "list", "--data-dir", "/nonexistent"]) == 2
    assert capsys.readouterr().err == "umbra: error: --admin-url is for the shadow, cluster, storage commands, not user\n"
    assert main(["--user", "bob", "user", "list", "--data-dir", "/nonexistent"]) == 2
    assert "--user is for the shadow, cluster, storage commands, not user" in capsys.readouterr().err


def test_version_anywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--version"], ["shadow", "list", "--version"], ["cluster", "--version"]):
        with pytest.raises(SystemExit) as exited:
            _parser().parse_args(argv)
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith("umbra ")


def test_a_missing_value_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shadow", "list", "--admin-url"]) == 2
    assert capsys.readouterr().err == "umbra: error: argument --admin-url: expected one argument\n"
