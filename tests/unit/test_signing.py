"""Gate signatures: pinned vectors, and the seed's own openssl recipe as a second opinion."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from collector.gate.signing import (
    ApiCredentials,
    body_hash,
    encode_query,
    rest_headers,
    rest_signature,
    signed_query,
    ws_auth,
    ws_signature,
)

SECRET = "bfc5f289273ea47b7cd41d9ce7e27a0dbfc5f289273ea47b7cd41d9ce7e27a0d"
BODY = (
    b'{"client_order_id":"da3ce7a088c8b0372b741419c7829033","currency":"BTC",'
    b'"sub_account":"10002","direction":"to","amount":"1","sub_account_type":"spot"}'
)


def openssl_rest_sign(method: str, path: str, query: str, body: str, ts: str) -> str:
    """The seed document's shell recipe, run by openssl: an independent implementation."""
    script = r"""
body_hash=$(printf "$body_param" | openssl sha512 | awk '{print $NF}')
sign_string="$method\n$prefix$url\n$query_param\n$body_hash\n$timestamp"
printf "$sign_string" | openssl sha512 -hmac "$secret" | awk '{print $NF}'
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "method": method,
        "prefix": "/api/v4",
        "url": path.removeprefix("/api/v4"),
        "query_param": query,
        "body_param": body,
        "timestamp": ts,
        "secret": SECRET,
    }
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, check=True)
    return out.stdout.decode().strip()


def openssl_hmac(message: str) -> str:
    out = subprocess.run(
        ["openssl", "sha512", "-hmac", SECRET],
        input=message.encode(),
        capture_output=True,
        check=True,
    )
    return out.stdout.decode().split()[-1]


def test_body_hash_of_empty_body_is_sha512_of_nothing() -> None:
    assert body_hash(b"") == hashlib.sha512(b"").hexdigest()
    assert body_hash(b"").startswith("cf83e1357eefb8bd")


def test_rest_signature_pinned_vector() -> None:
    sign = rest_signature(SECRET, "GET", "/api/v4/broker/info", "", b"", "1583827286")
    assert sign == (
        "dc82af4e038374b20109ccae138159ef5c4e6ad4d1dbd3c87171b83747ea865a"
        "cd2f4906722ec8f86d3f82e3b424b737289fbf39d555073e5b39f095badeac58"
    )


def test_rest_signature_signs_the_query_as_sent() -> None:
    sign = rest_signature(
        SECRET, "GET", "/api/v4/broker/sub_accounts", "limit=100&offset=0", b"", "1583827286"
    )
    assert sign == (
        "c70991f8614cd18dbe62ac2f464374d5174987125c62e7496bbbfcbd2f5f8231"
        "d367c274f0d4a4afc2c8d586c37cb560606e38a17426cf33c13203faf9d986d9"
    )


def test_ws_signature_pinned_vector() -> None:
    sign = ws_signature(SECRET, "unified.assets", "subscribe", 1700625194)
    assert sign == (
        "0a818ae94b58c1910bcad7838322a1ffec85edc8badea1712d8a9b4859215d33"
        "dc0d872584ee36a7f331dfd40a814b7b5c8b23813eef1f475037fc1c297a77a8"
    )


needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="openssl is the independent implementation"
)


@needs_openssl
@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/api/v4/broker/info", "", ""),
        ("GET", "/api/v4/broker/sub_account_transfers", "sub_uid=10002&limit=50&offset=100", ""),
        ("POST", "/api/v4/broker/sub_account_transfers", "", BODY.decode()),
        ("DELETE", "/api/v4/broker/sub_account_keys/100010/bfc5f289273ea47b", "", ""),
    ],
)
def test_rest_signature_matches_the_seed_recipe_in_openssl(
    method: str, path: str, query: str, body: str
) -> None:
    ours = rest_signature(SECRET, method, path, query, body.encode(), "1716796362")
    assert ours == openssl_rest_sign(method, path, query, body, "1716796362")


@needs_openssl
@pytest.mark.parametrize("event", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("channel", ["unified.assets", "unified.asset_detail"])
def test_ws_signature_matches_openssl(channel: str, event: str) -> None:
    expected = openssl_hmac(f"channel={channel}&event={event}&time=1716796362")
    assert ws_signature(SECRET, channel, event, 1716796362) == expected


def test_rest_headers_carry_key_whole_second_timestamp_and_sign() -> None:
    creds = ApiCredentials("mykey", SECRET)
    headers = rest_headers(creds, "get", "/api/v4/broker/info", "", b"", 1583827286.9)
    assert headers["KEY"] == "mykey"
    assert headers["Timestamp"] == "1583827286"
    assert headers["SIGN"] == rest_signature(
        SECRET, "GET", "/api/v4/broker/info", "", b"", "1583827286"
    )


def test_ws_auth_object_has_gates_shape() -> None:
    auth = ws_auth("unified.assets", "subscribe", 1700625194, ApiCredentials("k", SECRET))
    assert auth == {
        "method": "api_key",
        "KEY": "k",
        "SIGN": ws_signature(SECRET, "unified.assets", "subscribe", 1700625194),
    }


def test_credentials_repr_hides_the_secret() -> None:
    creds = ApiCredentials("visible-key", SECRET)
    assert SECRET not in repr(creds)
    assert SECRET not in str(creds)
    assert "visible-key" in repr(creds)


# -- Gate's APIv4 documentation vectors (gate-vectors.md) and query encoding ----


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "head", "tail"),
    [
        (
            "GET",
            "/api/v4/futures/orders",
            {"contract": "BTC_USD", "status": "finished", "limit": 50},
            b"",
            "55f84ea195d6fe57",
            "8b8a",
        ),
        (
            "POST",
            "/api/v4/futures/orders",
            {},
            b'{"contract":"BTC_USD","type":"limit","size":100,"price":6800,"time_in_force":"gtc"}',
            "eae42da914a590dd",
            "89f0",
        ),
    ],
)
def test_gates_documented_signature_vectors(
    method: str, path: str, params: dict[str, object], body: bytes, head: str, tail: str
) -> None:
    query = encode_query(params)
    headers = rest_headers(ApiCredentials("key", "secret"), method, path, query, body, 1541993715)
    assert headers["SIGN"].startswith(head)
    assert headers["SIGN"].endswith(tail)


def test_the_query_is_sent_encoded_and_signed_decoded_as_gates_sdk_does() -> None:
    params = {"sub_uid": "a b&c/ü+=%", "limit": 5}
    wire = encode_query(params)
    assert wire == "sub_uid=a+b%26c%2F%C3%BC%2B%3D%25&limit=5"
    # Gate's SDK: sign unquote_plus(urlencode(query)), send urlencode(query).
    assert signed_query(wire) == "sub_uid=a b&c/ü+=%&limit=5"
    headers = rest_headers(ApiCredentials("k", SECRET), "GET", "/api/v4/x", wire, b"", 1.0)
    assert headers["SIGN"] == rest_signature(
        SECRET, "GET", "/api/v4/x", "sub_uid=a b&c/ü+=%&limit=5", b"", "1"
    )
    assert headers["SIGN"] != rest_signature(SECRET, "GET", "/api/v4/x", wire, b"", "1")


def test_a_query_with_nothing_to_escape_signs_as_before() -> None:
    wire = encode_query({"limit": 100, "offset": 0})
    assert signed_query(wire) == wire == "limit=100&offset=0"
