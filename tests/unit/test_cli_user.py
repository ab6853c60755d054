"""`umbra user create|list|delete` on a data directory: arguments, passwords, and what is stored."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from umbra.cli.main import main
from umbra.cluster.control import DataDirLock, local_document_path, mark_cluster_data_dir, read_local_document
from umbra.security.scram import ScramMechanism
from umbra.security.users import ScramUsers


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("hunter2\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored(data_dir: Path) -> ScramUsers:
    return ScramUsers.from_document(read_local_document(data_dir, "scram_users"))


@pytest.mark.parametrize(("argv", "expected"), [
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file", "{pw}"],
     "give either --data-dir DIR (a stopped broker) or --etcd URL --cluster-id ID"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file", "{pw}", "--data-dir", "{dir}",
      "--etcd", "http://127.0.0.1:1"], "give either --data-dir"),
    (["user", "list", "--data-dir", "{dir}", "--cluster-id", "c"], "--cluster-id goes with --etcd"),
    (["user", "list", "--etcd", "http://127.0.0.1:1"], "--etcd needs --cluster-id"),
    (["user", "list", "--etcd", "127.0.0.1:1", "--cluster-id", "c"], "--etcd: '127.0.0.1:1' is not http://HOST:PORT"),
    (["user", "list", "--data-dir", "{dir}/missing"], "no such directory"),
    (["user", "create", "bob", "--password-file", "{pw}", "--data-dir", "{dir}"],
     "the following arguments are required: --mechanism"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-1", "--password-file", "{pw}", "--data-dir", "{dir}"],
     "invalid choice: 'SCRAM-SHA-1'"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--data-dir", "{dir}"],
     "one of the arguments --password-file --password-stdin --password-env is required"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file", "{pw}", "--password-stdin",
      "--data-dir", "{dir}"], "not allowed with argument"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password", "x", "--data-dir", "{dir}"],
     "ambiguous option: --password"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file", "{pw}", "--data-dir", "{dir}",
      "--iterations", "4095"], "--iterations: 4095 is not between 4096 and 16384"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file", "{pw}", "--data-dir", "{dir}",
      "--iterations", "16385"], "--iterations: 16385 is not between 4096 and 16384"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file", "{pw}", "--data-dir", "{dir}",
      "--iterations", "many"], "invalid int value: 'many'"),
    (["user", "create", "", "--mechanism", "SCRAM-SHA-256", "--password-file", "{pw}", "--data-dir", "{dir}"],
     "a user name must not be empty"),
    (["user", "create", "x" * 256, "--mechanism", "SCRAM-SHA-256", "--password-file", "{pw}", "--data-dir", "{dir}"],
     "at most 255 characters"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file", "{dir}/nope", "--data-dir",
      "{dir}"], "--password-file {dir}/nope: No such file or directory"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-env", "UMBRA_TEST_UNSET",
      "--data-dir", "{dir}"], "environment variable UMBRA_TEST_UNSET is not set"),
    (["user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-env", "UMBRA_TEST_EMPTY",
      "--data-dir", "{dir}"], "environment variable UMBRA_TEST_EMPTY: the password is empty"),
    (["user", "delete", "nobody", "--data-dir", "{dir}"], "there is no user 'nobody'"),
    (["user", "bogus"], "invalid choice: 'bogus'"),
])
def test_every_bad_argument_is_one_line_and_exit_2(argv: list[str], expected: str, data_dir: Path,
                                                   password_file: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UMBRA_TEST_UNSET", raising=False)
    monkeypatch.setenv("UMBRA_TEST_EMPTY", "")
    args = [a.replace("{pw}", str(password_file)).replace("{dir}", str(data_dir)) for a in argv]
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("umbra: error: "), err
    assert expected.replace("{dir}", str(data_dir)) in err
    assert not local_document_path(data_dir, "scram_users").exists()


def test_create_list_and_delete_offline(data_dir: Path, password_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "user", "create", "alice", "--mechanism", "SCRAM-SHA-512", "--mechanism",
                         "SCRAM-SHA-256", "--password-file", str(password_file), "--iterations", "8192",
                         "--data-dir", str(data_dir))
    assert code == 0, err
    assert out == "created user alice: SCRAM-SHA-256 (8192 iterations), SCRAM-SHA-512 (8192 iterations)\n"
    assert "no broker has used" in err  # a note, not an error: the broker finds the user when it first starts
    alice = stored(data_dir).credentials("alice")
    assert [c.mechanism for c in alice] == list(ScramMechanism)
    assert all(c.matches_password("hunter2") for c in alice)  # the file's final newline is not the password
    assert "hunter2" not in local_document_path(data_dir, "scram_users").read_text()

    assert run(capsys, "user", "list", "--data-dir", str(data_dir))[1] == (
        "alice  SCRAM-SHA-256 (8192 iterations), SCRAM-SHA-512 (8192 iterations)\n")
    listed = json.loads(run(capsys, "user", "list", "--data-dir", str(data_dir), "--format", "json")[1])
    assert listed == {"users": [{"name": "alice", "credentials": [
        {"mechanism": "SCRAM-SHA-256", "iterations": 8192}, {"mechanism": "SCRAM-SHA-512", "iterations": 8192}]}]}

    code, out, _ = run(capsys, "user", "delete", "alice", "--mechanism", "SCRAM-SHA-256", "--data-dir", str(data_dir))
    assert code == 0 and out == "deleted SCRAM-SHA-256 of user alice; it keeps SCRAM-SHA-512 (8192 iterations)\n"
    code, _, err = run(capsys, "user", "delete", "alice", "--mechanism", "SCRAM-SHA-256", "--data-dir", str(data_dir))
    assert code == 2 and "user 'alice' has no SCRAM-SHA-256 credential" in err
    assert run(capsys, "user", "delete", "alice", "--data-dir", str(data_dir))[1] == "deleted user alice\n"
    assert run(capsys, "user", "list", "--data-dir", str(data_dir))[1] == "no SCRAM users\n"


def test_create_again_sets_a_new_password(data_dir: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "first")
    run(capsys, "user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-env", "PW", "--data-dir",
        str(data_dir))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"second\r\n")))
    code, out, _ = run(capsys, "user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-stdin",
                       "--data-dir", str(data_dir))
    assert code == 0 and out.startswith("updated user bob")
    credential = stored(data_dir).credentials("bob")[0]
    assert credential.matches_password("second") and not credential.matches_password("first")


def test_a_running_broker_s_data_dir_is_refused(data_dir: Path, password_file: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lock = DataDirLock.acquire(data_dir, "held by the test")  # as a running broker's control plane holds it
    try:
        code, _, err = run(capsys, "user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file",
                           str(password_file), "--data-dir", str(data_dir))
    finally:
        lock.release()
    assert code == 2 and err.count("\n") == 1
    assert "is in use by a running broker" in err and "stop the broker first" in err
    assert not local_document_path(data_dir, "scram_users").exists()


def test_a_cluster_broker_s_data_dir_is_refused_naming_its_etcd(data_dir: Path, password_file: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A cluster broker's users live in etcd: a document written into its data dir would be ignored."""
    mark_cluster_data_dir(data_dir, "http://127.0.0.1:2379", "prod")  # as a broker started with --etcd does
    code, _, err = run(capsys, "user", "create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file",
                       str(password_file), "--data-dir", str(data_dir))
    assert code == 2 and err.count("\n") == 1
    assert "belongs to a broker of cluster 'prod'" in err
    assert "--etcd http://127.0.0.1:2379 --cluster-id prod" in err
    assert not local_document_path(data_dir, "scram_users").exists()
