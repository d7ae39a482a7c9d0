"""The Broker REST models' own logic: which sub-accounts are enabled, which keys read-only."""

from __future__ import annotations

import pydantic
import pytest

from collector.gate.models import ApiKeyInfo, CreatedApiKey, KeyPermission, SubAccount


@pytest.mark.parametrize(
    ("status", "enabled"), [("enabled", True), ("disabled", False), ("", False)]
)
def test_only_an_enabled_sub_account_is_enabled(status: str, enabled: bool) -> None:
    account = SubAccount.model_validate({"id": "s1", "gate_id": 100001, "status": status})
    assert account.enabled is enabled


def test_a_sub_account_without_status_is_enabled_and_unknown_fields_are_ignored() -> None:
    account = SubAccount.model_validate({"id": "s1", "gate_id": 100001, "new_field": 1})
    assert account.enabled and account.gate_id == 100001


@pytest.mark.parametrize(
    ("perms", "read_only"),
    [
        ([], True),
        ([{"name": "unified", "read_only": True}], True),
        ([{"name": "unified"}], True),  # read_only defaults to true
        ([{"name": "unified", "read_only": True}, {"name": "spot", "read_only": False}], False),
        ([{"name": "spot", "read_only": False}], False),
    ],
)
def test_a_key_is_read_only_when_every_permission_is(
    perms: list[dict[str, object]], read_only: bool
) -> None:
    key = ApiKeyInfo.model_validate({"key": "k", "perms": perms})
    assert key.read_only is read_only
    assert all(isinstance(p, KeyPermission) for p in key.perms)


def test_a_created_keys_secret_never_shows_in_its_repr() -> None:
    key = CreatedApiKey.model_validate({"key": "k", "secret": "very-secret-value"})
    assert "very-secret-value" not in repr(key) and "very-secret-value" not in str(key)
    assert key.secret.get_secret_value() == "very-secret-value"


# -- Model rules found by mutation testing (tests/MUTATION.md): ids and times held as text


@pytest.mark.parametrize(
    ("sent", "held"),
    [
        (1716796364, "1716796364"),  # Gate's SDK: an int
        (1716796364.0, "1716796364"),  # a JSON number that is whole
        ("1716796364", "1716796364"),  # the Broker document: a string
        ("2024-05-27", "2024-05-27"),
    ],
)
def test_ids_and_times_are_held_as_their_decimal_text(sent: object, held: str) -> None:
    info = ApiKeyInfo.model_validate({"key": "k", "user_id": sent, "created_at": sent})
    assert (info.user_id, info.created_at) == (held, held)
    sub = SubAccount.model_validate({"id": sent, "gate_id": 1})
    assert sub.id == held


@pytest.mark.parametrize("sent", [True, 1.5, None])
def test_a_bool_a_fraction_or_null_is_no_id(sent: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        SubAccount.model_validate({"id": sent, "gate_id": 1})
