"""The `authorization` setting: off by default, a typed mapping from YAML, one line naming each mistake."""

from __future__ import annotations

from typing import Any

import pytest

from umbra.config import AuthorizationConfig, BrokerConfig, ConfigError, build_config


def test_disabled_by_default() -> None:
    assert build_config({}, {}).authorization == AuthorizationConfig()
    assert BrokerConfig().authorization.enabled is False


def test_from_yaml() -> None:
    config = build_config({"authorization": {"enabled": True, "super_users": ["User:admin", "User:CN=ops,O=x"],
                                             "allow_everyone_if_no_acl_found": True}}, {})
    assert config.authorization == AuthorizationConfig(True, ("User:admin", "User:CN=ops,O=x"), True)
    assert build_config({"authorization": {"enabled": True}}, {}).authorization == AuthorizationConfig(True)


@pytest.mark.parametrize(("value", "message"), [
    ("yes", "authorization: expected a mapping"),
    ({"enable": True}, "authorization: unknown key 'enable'"),
    ({"enabled": "true"}, "authorization.enabled: expected true or false"),
    ({"allow_everyone_if_no_acl_found": 1}, "authorization.allow_everyone_if_no_acl_found: expected true or false"),
    ({"super_users": "User:admin"}, "authorization.super_users: expected a list"),
    ({"super_users": ["User:admin", "admin"]}, "authorization.super_users[1]: expected a principal Type:name"),
    ({"super_users": [":admin"]}, "authorization.super_users[0]"),
    ({"super_users": [7]}, "authorization.super_users[0]"),
])
def test_mistakes_are_one_line_naming_the_key(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        build_config({"authorization": value}, {})
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)
