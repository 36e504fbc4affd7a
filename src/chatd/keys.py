"""API keys: `--api-key` keys and the config's `[[keys]]` (allow-list, rpm, tpm).

chatd keeps only a key's SHA-256: `[[keys]]` gives it as `key_sha256`, or names an
environment variable (`key_env`) read once at start. The principal that owns stored
completions is `key_` + the first 16 hex digits of the SHA-256, as for `--api-key`,
so moving a key from `--api-key` into `[[keys]]` keeps its stored completions.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from chatd.config import Settings

LOCAL_PRINCIPAL = "local"  # every request when no key is configured
FIELDS = frozenset({"name", "key_sha256", "key_env", "models", "rpm", "tpm"})
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class KeyConfigError(ValueError):
    """A `[[keys]]` entry chatd cannot use; the message is one line for the operator."""


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def principal_of_digest(digest_hex: str) -> str:
    """A stable, non-secret id for the key with this SHA-256."""
    return "key_" + digest_hex[:16]


@dataclass(frozen=True, slots=True)
class Key:
    """What chatd knows of one accepted key. `name` labels metrics and rate-limit errors."""

    name: str
    principal: str
    models: tuple[str, ...] | None = None  # glob allow-list; None = every model
    rpm: int | None = None
    tpm: int | None = None

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def allows(self, model: str) -> bool:
        """Whether the model id, as the client wrote it, matches the allow-list."""
        if self.models is None:
            return True
        return any(fnmatchcase(model, pattern) for pattern in self.models)


OPEN_KEY = Key(LOCAL_PRINCIPAL, LOCAL_PRINCIPAL)  # no key configured: anyone, anything


class Keyring:
    """The accepted keys, found by the SHA-256 of what the client presented."""

    def __init__(self, keys: dict[str, Key]) -> None:
        self.by_digest = keys

    def find(self, presented: str | None) -> Key | None:
        if not self.by_digest:
            return OPEN_KEY
        if presented is None:
            return None
        # a dict lookup by digest: its timing tells nothing useful about the key itself
        return self.by_digest.get(sha256_hex(presented))


def parse_keys(entries: Any, api_keys: list[str], environ: dict[str, str] | None = None) -> Keyring:
    """The keyring of `--api-key` keys and `[[keys]]` entries; KeyConfigError if one is bad."""
    env = os.environ if environ is None else environ
    keys: dict[str, Key] = {}
    for secret in api_keys:
        digest = sha256_hex(secret)
        principal = principal_of_digest(digest)
        keys[digest] = Key(principal, principal)
    if entries is None:
        return Keyring(keys)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise KeyConfigError("keys must be an array of tables: write each key as [[keys]]")
    names: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        digest, key = _parse_entry(entry, number, env)
        if key.name in names:
            raise KeyConfigError(f"[[keys]] #{number}: the name {key.name!r} is used twice")
        if digest in keys:
            other = keys[digest].name
            raise KeyConfigError(f"[[keys]] {key.name!r}: the same key as {other!r}")
        names.add(key.name)
        keys[digest] = key
    return Keyring(keys)


def _parse_entry(entry: dict[str, Any], number: int, env: Any) -> tuple[str, Key]:
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise KeyConfigError(
            f"[[keys]] #{number}: name must be 1-64 letters, digits, '.', '_', '@' or '-'"
        )
    where = f"[[keys]] {name!r}"
    unknown = sorted(set(entry) - FIELDS)
    if unknown:
        raise KeyConfigError(f"{where}: unknown field {unknown[0]!r}")
    if ("key_sha256" in entry) == ("key_env" in entry):
        raise KeyConfigError(f"{where}: give exactly one of key_sha256 or key_env")
    if "key_sha256" in entry:
        digest = entry["key_sha256"]
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest.lower()):
            raise KeyConfigError(f"{where}: key_sha256 must be 64 hex digits")
        digest = digest.lower()
    else:
        variable = entry["key_env"]
        if not isinstance(variable, str) or not variable:
            raise KeyConfigError(f"{where}: key_env must name an environment variable")
        value = env.get(variable, "").strip()
        if not value:
            raise KeyConfigError(f"{where}: the environment variable {variable} is not set")
        digest = sha256_hex(value)
    models = entry.get("models")
    if models is not None and (
        not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)
    ):
        raise KeyConfigError(f"{where}: models must be a list of model ids or globs")
    key = Key(
        name=name,
        principal=principal_of_digest(digest),
        models=None if models is None else tuple(models),
        rpm=_limit(entry, "rpm", where),
        tpm=_limit(entry, "tpm", where),
    )
    return digest, key


def _limit(entry: dict[str, Any], field: str, where: str) -> int | None:
    value = entry.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KeyConfigError(f"{where}: {field} must be a positive integer")
    return value


def new_key(name: str | None = None) -> tuple[str, str]:
    """A fresh random key and its `[[keys]]` entry (which holds only the key's SHA-256)."""
    key = "sk-chatd-" + secrets.token_urlsafe(32)
    digest = sha256_hex(key)
    name = name or "key-" + digest[:8]
    if not NAME.fullmatch(name):
        raise KeyConfigError("--name must be 1-64 letters, digits, '.', '_', '@' or '-'")
    entry = f'[[keys]]\nname = "{name}"\nkey_sha256 = "{digest}"\n'
    return key, entry


def load_keyring(settings: Settings) -> Keyring:
    """The keyring of `settings`; a bad `[[keys]]` entry ends the program with one line."""
    try:
        return parse_keys(settings.config.get("keys"), settings.api_keys)
    except KeyConfigError as exc:
        raise SystemExit(f"chatd: {exc}") from None


def print_new_key(name: str | None) -> None:
    """`chatd key new`: the key on stderr, its entry on stdout (`>> chatd.toml` appends it)."""
    try:
        key, entry = new_key(name)
    except KeyConfigError as exc:
        raise SystemExit(f"chatd: {exc}") from None
    print(f"API key (shown once; chatd keeps only its SHA-256): {key}", file=sys.stderr)
    print(entry, end="")
