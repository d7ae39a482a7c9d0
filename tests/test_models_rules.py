"""Model rules found by mutation testing (tests/MUTATION.md): ids and times held as text."""

from __future__ import annotations

import pydantic
import pytest

from collector.gate.models import ApiKeyInfo, SubAccount


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
