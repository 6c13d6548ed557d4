"""Names to services and categories: the data files of agent/data/ (see its README.md).

A domain of a service matches itself and every name below it, and the longest matching
domain wins, so `mail.google.com` can be Gmail (email) under `google.com`, Google (search).
The built-in file comes first, then the site's own files, whose entries take precedence
for the same domain. The registrable domain of any name comes from the Public Suffix List
(the `publicsuffixlist` package carries it, offline).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from publicsuffixlist import PublicSuffixList

T = TypeVar("T")

BUILTIN = Path(__file__).with_name("data") / "services.toml"


@dataclass(frozen=True, slots=True)
class Service:
    """A service of the services file: what a domain belongs to."""

    id: str
    name: str
    category: str
    region: str


class ServiceMap:
    def __init__(self, files: tuple[Path, ...] = ()) -> None:
        """Loads the built-in file and then `files`; ValueError names a bad file."""
        self.categories: dict[str, str] = {}
        self.versions: list[str] = []
        self._by_domain: dict[str, Service] = {}
        for path in (BUILTIN, *files):
            self._load(path)
        self._psl = PublicSuffixList()
        self.lookup = lru_cache(maxsize=1 << 16)(self._lookup)
        self.domain = lru_cache(maxsize=1 << 16)(self._domain)

    @property
    def version(self) -> str:
        return "+".join(self.versions)

    def __len__(self) -> int:
        return len({s.id for s in self._by_domain.values()})

    def _load(self, path: Path) -> None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: cannot read services: {exc}") from None
        self.versions.append(str(data.get("version", "unversioned")))
        categories = data.get("categories", {})
        if not isinstance(categories, dict):
            raise ValueError(f"{path}: [categories] must be a table")
        self.categories.update({str(k): str(v) for k, v in categories.items()})
        services = data.get("services", {})
        if not isinstance(services, dict):
            raise ValueError(f"{path}: [services.*] must be tables")
        for sid, entry in services.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("domains"), list):
                raise ValueError(f"{path}: services.{sid} needs a list of domains")
            category = str(entry.get("category", ""))
            if category not in self.categories:
                raise ValueError(f"{path}: services.{sid}: unknown category {category!r}")
            service = Service(
                str(sid), str(entry.get("name", sid)), category, str(entry.get("region", "global"))
            )
            for domain in entry["domains"]:
                self._by_domain[str(domain).lower().rstrip(".")] = service

    def _lookup(self, name: str) -> Service | None:
        """The service of a host name: its longest listed suffix, or None."""
        found = longest_suffix(self._by_domain, name.lower().rstrip("."))
        return found[1] if found is not None else None

    def _domain(self, name: str) -> str | None:
        """The registrable domain (eTLD+1) of a host name, or None (an address, a suffix)."""
        name = name.lower().rstrip(".")
        if not name or name.replace(".", "").isdigit() or ":" in name:
            return None
        return self._psl.privatesuffix(name)


def longest_suffix(table: Mapping[str, T], name: str) -> tuple[str, T] | None:
    """The longest suffix of `name` (itself included, label by label) that is a key of
    `table`, with its value; `name` is already lower case without a final dot."""
    while True:
        value = table.get(name)
        if value is not None:
            return name, value
        dot = name.find(".")
        if dot < 0:
            return None
        name = name[dot + 1 :]
