"""The encrypted store: round trip, one clear error for a bad key or file, nothing
overwritten, per-setup isolation, keys never from config."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harvester_edge.credentials.store import (
    CredentialStore,
    CredentialStoreError,
    Entry,
    load_key,
    new_key,
)

from .conftest import SCAN, write_private


def _entry(name: str = "panda_token", value: str = "s3cr3t-token-value-0001") -> Entry:
    SCAN.secret(value)
    return Entry.make(name, value, 1000.0, 2000.0, source="/src")


def test_round_trip_encrypted_at_rest(tmp_path: Path, store_key: Path) -> None:
    store = CredentialStore(str(tmp_path / "st"), "queueA", load_key(str(store_key)))
    store.put(_entry())
    blob = (tmp_path / "st" / "queueA" / "store.bin").read_bytes()
    assert b"s3cr3t-token-value-0001" not in blob
    assert oct((tmp_path / "st" / "queueA" / "store.bin").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "st" / "queueA").stat().st_mode & 0o777) == "0o700"
    got = CredentialStore(str(tmp_path / "st"), "queueA", load_key(str(store_key))).load()
    assert got["panda_token"].value == "s3cr3t-token-value-0001"
    assert "s3cr3t" not in repr(got["panda_token"]) and "s3cr3t" not in repr(store)


def test_wrong_key_one_clear_error_and_nothing_overwritten(tmp_path: Path, store_key: Path) -> None:
    CredentialStore(str(tmp_path), "q", load_key(str(store_key))).put(_entry())
    path = tmp_path / "q" / "store.bin"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    other = write_private(tmp_path / "other.key", SCAN.secret(new_key()))
    wrong = CredentialStore(str(tmp_path), "q", load_key(str(other)))
    with pytest.raises(CredentialStoreError) as err:
        wrong.load()
    SCAN.exception(err.value)
    assert "does not decrypt with this setup's key" in str(err.value)
    assert "nothing was written" in str(err.value)
    with pytest.raises(CredentialStoreError):
        wrong.put(_entry("another"))
    with pytest.raises(CredentialStoreError):
        wrong.remove("panda_token")
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_store_clear_error_nothing_overwritten(
    tmp_path: Path, store_key: Path, damage: str
) -> None:
    key = load_key(str(store_key))
    CredentialStore(str(tmp_path), "q", key).put(_entry())
    path = tmp_path / "q" / "store.bin"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:20]
    elif damage == "flip":
        data[-5] ^= 0x01
    else:
        data = bytearray(b"not a store at all" * 4)
    path.write_bytes(bytes(data))
    store = CredentialStore(str(tmp_path), "q", key)
    with pytest.raises(CredentialStoreError) as err:
        store.load()
    assert str(tmp_path / "q" / "store.bin") in str(err.value)
    with pytest.raises(CredentialStoreError):
        store.put(_entry())
    assert path.read_bytes() == bytes(data)


def test_setup_b_store_unreadable_by_setup_a(tmp_path: Path, store_key: Path) -> None:
    """Same master key, other setup: B's store copied into A's place does not decrypt."""
    key = load_key(str(store_key))
    CredentialStore(str(tmp_path), "queueB", key).put(_entry(value="b-only-secret-value-xyz"))
    os.makedirs(tmp_path / "queueA")
    shutil.copy(tmp_path / "queueB" / "store.bin", tmp_path / "queueA" / "store.bin")
    with pytest.raises(CredentialStoreError, match="another setup's store"):
        CredentialStore(str(tmp_path), "queueA", key).load()
    for bad in ("../queueB", "queueB/..", "", "a/b"):
        with pytest.raises(CredentialStoreError, match="cannot name a store"):
            CredentialStore(str(tmp_path), bad, key)


def test_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = SCAN.secret(new_key())
    open_file = tmp_path / "open.key"
    open_file.write_text(key)
    os.chmod(open_file, 0o644)
    with pytest.raises(CredentialStoreError, match="must be 0600"):
        load_key(str(open_file))
    monkeypatch.setenv("HEDGE_TEST_STORE_KEY", key)
    assert len(load_key(key_env="HEDGE_TEST_STORE_KEY")) == 32
    monkeypatch.setenv("HEDGE_TEST_STORE_KEY", "short")
    with pytest.raises(CredentialStoreError, match="does not hold a store key"):
        load_key(key_env="HEDGE_TEST_STORE_KEY")
    with pytest.raises(CredentialStoreError, match="no store key"):
        load_key()
