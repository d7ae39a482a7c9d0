"""Typed shapes of the Broker REST API's requests and responses.

Responses ignore fields they do not know (Gate adds fields over time); the
ones the collector relies on are required, so a malformed answer is an error
that names what was missing instead of a ``KeyError`` somewhere later.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr


def _as_text(value: object) -> object:
    """Gate sends ids and times as int, number or string: keep them as text."""
    if isinstance(value, bool):
        return value  # let pydantic reject it: True is no id
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value


# An id or a time that Gate may send as a number or as a string ("may differ in
# formats (int64, number or string)"); the models hold it as its decimal text.
Text = Annotated[str, BeforeValidator(_as_text)]


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerInfo(_Response):
    """``GET /broker/info``."""

    id: int
    commission_rate: str
    status: str = "enabled"
    min_taker_rate: str = ""
    max_taker_rate: str = ""
    min_maker_rate: str = ""
    max_maker_rate: str = ""
    futures_min_taker_rate: str = ""
    futures_max_taker_rate: str = ""
    futures_min_maker_rate: str = ""
    futures_max_maker_rate: str = ""
    max_sub_accounts: int = 0
    used_sub_accounts: int = 0


class SubAccountSpec(_Request):
    """The body of create/update sub-account."""

    id: str
    name: str = ""
    maker_rate: str
    taker_rate: str
    futures_maker_rate: str
    futures_taker_rate: str
    gt_discount: bool = False
    gt_taker_rate: str = "0"
    gt_maker_rate: str = "0"
    point_type: int = 1


class SubAccount(_Response):
    """A managed sub-account; ``gate_id`` is the Gate user id used everywhere else."""

    id: Text
    name: str = ""
    gate_id: int
    status: str = "enabled"
    maker_rate: str = ""
    taker_rate: str = ""
    futures_maker_rate: str = ""
    futures_taker_rate: str = ""
    gt_discount: bool = False
    point_type: int | str = 1

    @property
    def enabled(self) -> bool:
        """Only enabled sub-accounts get a key and a session."""
        return self.status == "enabled"


class KeyPermission(BaseModel):
    """One permission of an API key."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str
    read_only: bool = True


class KeySpec(_Request):
    """The body of create/update key."""

    name: str
    perms: list[KeyPermission]
    ip_whitelist: list[str] = Field(default_factory=list)
    type: int | None = None
    user_id: str | None = None


class ApiKeyInfo(_Response):
    """An API key as list/get return it: never with its secret.

    ``user_id`` and the times are ints in Gate's SDK and strings in the Broker
    document: both are read, and held as text.
    """

    user_id: Text = ""
    name: str = ""
    type: int = 0
    mode: int = 0
    state: int = 0
    perms: list[KeyPermission] = Field(default_factory=list)
    key: str
    ip_whitelist: list[str] = Field(default_factory=list)
    created_at: Text = ""
    updated_at: Text = ""
    last_access: Text = ""

    @property
    def created_seconds(self) -> float | None:
        """``created_at`` as Unix seconds (ms accepted); None when unknown."""
        try:
            number = float(self.created_at)
        except ValueError:
            return None
        return number / 1000.0 if number > 1e11 else number

    @property
    def read_only(self) -> bool:
        """True when every permission is read-only."""
        return all(perm.read_only for perm in self.perms)


class CreatedApiKey(ApiKeyInfo):
    """The answer of create key: the only time Gate reveals the secret."""

    secret: SecretStr


TransferDirection = Literal["to", "from"]


class TransferSpec(_Request):
    """The body of a broker transfer; ``client_order_id`` makes retries safe."""

    currency: str
    sub_account: str
    direction: TransferDirection
    amount: str
    client_order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    sub_account_type: str = "spot"


class Transfer(_Response):
    """A row of the broker's transfer history."""

    currency: str
    sub_account: Text
    direction: str
    amount: Text
    uid: Text = ""
    client_order_id: str = ""
    timest: Text = ""
    source: str = ""
    sub_account_type: str = ""


def label(account: SubAccount) -> str:
    """The name an operator knows the account by (its id when it has no name)."""
    return account.name or account.id
