"""agent/data/services.toml: the built-in service attribution table is well formed, unambiguous
and covers what an analyst needs (categories, regions, the big services).

The matching rule the sensor applies (documented in the file and in agent/data/README.md) is
re-stated here as `attribute()`: a domain matches itself and every name below it, and the
longest matching domain wins.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[2] / "agent" / "data" / "services.toml"

ID = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
VERSION = re.compile(r"^\d{4}\.\d{2}\.\d{2}(?:\.\d+)?$")
REGION_GROUPS = {"global", "eu", "asia", "latam", "mena", "africa"}
SERVICE_KEYS = {"name", "category", "domains", "region"}

REQUIRED_CATEGORIES = {
    "social",
    "messaging",
    "news",
    "video",
    "streaming_audio",
    "gaming",
    "email",
    "search",
    "maps",
    "shopping",
    "cloud_storage",
    "software_updates",
    "cdn",
    "ads_trackers",
    "adult",
    "vpn_proxy",
    "crypto",
    "productivity",
    "video_conferencing",
    "education",
    "finance",
    "government",
    "health",
    "travel",
    "dating",
    "sports",
    "weather",
    "developer",
    "ai",
    "reference",
    "file_sharing",
    "os_services",
    "security",
}
LARGE_CATEGORIES = {"news": 70, "social": 30, "video": 30, "gaming": 30, "email": 15}


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    with DATA.open("rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return data["services"]


@pytest.fixture(scope="module")
def index(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """domain -> service id (duplicates are caught by their own test)."""
    return {d: sid for sid, s in services.items() for d in s["domains"]}


def attribute(index: dict[str, str], name: str) -> str | None:
    """The service id for `name`: the longest domain that is `name` or a parent of it."""
    labels = name.rstrip(".").lower().split(".")
    for i in range(len(labels)):
        sid = index.get(".".join(labels[i:]))
        if sid is not None:
            return sid
    return None


def valid_hostname(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(LABEL.match(x) for x in labels)


def test_top_level_keys(data: dict[str, Any]) -> None:
    assert set(data) == {"version", "categories", "services"}


def test_version(data: dict[str, Any]) -> None:
    assert isinstance(data["version"], str)
    assert VERSION.match(data["version"]), "version is YYYY.MM.DD, optionally .N"


def test_categories(data: dict[str, Any]) -> None:
    categories = data["categories"]
    assert len(categories) >= 30
    for cid, name in categories.items():
        assert ID.match(cid), cid
        assert isinstance(name, str) and name.strip(), cid
    assert set(categories) >= REQUIRED_CATEGORIES, REQUIRED_CATEGORIES - set(categories)


def test_service_count(services: dict[str, dict[str, Any]]) -> None:
    assert len(services) >= 400


def test_service_fields(data: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    problems = []
    for sid, s in services.items():
        if not ID.match(sid):
            problems.append(f"{sid}: id is not lower_snake_case")
        if set(s) - SERVICE_KEYS:
            problems.append(f"{sid}: unknown keys {sorted(set(s) - SERVICE_KEYS)}")
        if not isinstance(s.get("name"), str) or not s["name"].strip():
            problems.append(f"{sid}: no name")
        if s.get("category") not in data["categories"]:
            problems.append(f"{sid}: unknown category {s.get('category')!r}")
        domains = s.get("domains")
        if not isinstance(domains, list) or not domains:
            problems.append(f"{sid}: no domains")
        region = s.get("region", "global")
        if not isinstance(region, str) or not (
            region in REGION_GROUPS or re.fullmatch(r"[a-z]{2}", region)
        ):
            problems.append(f"{sid}: bad region {region!r}")
    assert not problems, "\n".join(problems)


def test_domains_are_plain_hostnames(services: dict[str, dict[str, Any]]) -> None:
    problems = []
    for sid, s in services.items():
        for d in s["domains"]:
            if not isinstance(d, str):
                problems.append(f"{sid}: {d!r} is not a string")
            elif d != d.lower():
                problems.append(f"{sid}: {d} is not lower case")
            elif "://" in d or "*" in d or d.endswith(".") or not valid_hostname(d):
                problems.append(f"{sid}: {d} is not a plain host name")
    assert not problems, "\n".join(problems)


def test_each_domain_in_one_service_once(services: dict[str, dict[str, Any]]) -> None:
    owners: dict[str, list[str]] = {}
    for sid, s in services.items():
        for d in s["domains"]:
            owners.setdefault(d, []).append(sid)
    duplicated = {d: sids for d, sids in owners.items() if len(sids) > 1}
    assert not duplicated, duplicated


def test_no_domain_redundant_within_its_service(services: dict[str, dict[str, Any]]) -> None:
    """`x.example.com` next to `example.com` in the same service adds nothing."""
    redundant = [
        f"{sid}: {d} is below {parent}"
        for sid, s in services.items()
        for d in s["domains"]
        for parent in s["domains"]
        if d.endswith("." + parent)
    ]
    assert not redundant, "\n".join(redundant)


def test_every_category_is_used(data: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    used = {s["category"] for s in services.values()}
    assert set(data["categories"]) <= used, set(data["categories"]) - used


def test_categories_are_populated(services: dict[str, dict[str, Any]]) -> None:
    counts = Counter(s["category"] for s in services.values())
    thin = {c: counts[c] for c in REQUIRED_CATEGORIES if counts[c] < 3}
    assert not thin, thin
    small = {c: counts[c] for c, n in LARGE_CATEGORIES.items() if counts[c] < n}
    assert not small, small


@pytest.mark.parametrize("region", ["cn", "ru", "kr", "jp", "in", "br"])
def test_regional_coverage(services: dict[str, dict[str, Any]], region: str) -> None:
    count = sum(1 for s in services.values() if s.get("region") == region)
    assert count >= (10 if region in {"cn", "ru", "kr", "jp"} else 5), count


@pytest.mark.parametrize("region", ["cn", "ru", "kr", "jp"])
def test_regional_categories(services: dict[str, dict[str, Any]], region: str) -> None:
    categories = {s["category"] for s in services.values() if s.get("region") == region}
    assert {"news", "video", "shopping"} <= categories, categories


@pytest.mark.parametrize(
    ("name", "category", "region"),
    [
        ("youtube.com", "video", None),
        ("www.youtube.com", "video", None),
        ("googlevideo.com", "video", None),
        ("rr3---sn-4g5e6nze.googlevideo.com", "video", None),
        ("i.ytimg.com", "video", None),
        ("music.youtube.com", "streaming_audio", None),
        ("mail.google.com", "email", None),
        ("gmail.com", "email", None),
        ("google.com", "search", None),
        ("www.google.com", "search", None),
        ("www.google.co.jp", "search", None),
        ("drive.google.com", "cloud_storage", None),
        ("docs.google.com", "productivity", None),
        ("maps.google.com", "maps", None),
        ("meet.google.com", "video_conferencing", None),
        ("play.google.com", "software_updates", None),
        ("news.google.com", "news", None),
        ("connectivitycheck.gstatic.com", "os_services", None),
        ("scontent.xx.fbcdn.net", "social", None),
        ("occ-0-1-2.1.nflxso.net", "video", None),
        ("weibo.com", "social", "cn"),
        ("m.weibo.cn", "social", "cn"),
        ("vk.com", "social", "ru"),
        ("naver.com", None, "kr"),
        ("yahoo.co.jp", None, "jp"),
        ("news.yahoo.co.jp", "news", "jp"),
        ("steampowered.com", "gaming", None),
        ("store.steampowered.com", "gaming", None),
        ("doubleclick.net", "ads_trackers", None),
        ("stats.g.doubleclick.net", "ads_trackers", None),
        ("a1234.dscb.akamaiedge.net", "cdn", None),
        ("ocsp.digicert.com", "security", None),
        ("WWW.BBC.CO.UK.", "news", "gb"),
    ],
)
def test_known_mappings(
    services: dict[str, dict[str, Any]],
    index: dict[str, str],
    name: str,
    category: str | None,
    region: str | None,
) -> None:
    sid = attribute(index, name)
    assert sid is not None, f"{name} is not attributed"
    if category is not None:
        assert services[sid]["category"] == category, (name, sid)
    if region is not None:
        assert services[sid].get("region", "global") == region, (name, sid)


@pytest.mark.parametrize(
    "name", ["notgmail.com", "gmail.com.example.net", "example.invalid", "com"]
)
def test_match_is_on_label_boundaries(index: dict[str, str], name: str) -> None:
    assert attribute(index, name) is None
