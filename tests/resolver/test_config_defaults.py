"""Config defaults are stated once (the dataclasses in resolver/config.py), and every key of
systemd/config.example.yaml reaches the part it configures."""

from __future__ import annotations

import ast
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from blocklists.feed import Feed
from resolver.assembly import cache_settings, server_settings
from resolver.cache import CacheSettings
from resolver.config import CacheConfig, Config, DnsConfig, load_config
from resolver.server import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "systemd" / "config.example.yaml"
PACKAGES = ("resolver", "blocklists", "policy", "webui")


def _sections(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every config key path -> its dataclass default ("dns.cache.max_entries" -> 100000)."""
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    out: dict[str, Any] = {}
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            out.update(_sections(hint, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


CONFIG_KEYS = {k: v for k, v in _sections(Config).items() if k != "source"}


def _literal(value: object) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)


# The operator's keys by the package that may import their dataclass: resolver/ reads Config
# (resolver/config.py), blocklists/ reads Feed (blocklists/feed.py). The web UI cannot import
# resolver.config (imports go resolver -> webui -> blocklists -> policy); the composition root
# passes it the configured values.
SCOPES = {
    "resolver": (
        {k.rsplit(".", 1)[-1] for k, v in CONFIG_KEYS.items() if _literal(v)},
        ROOT / "resolver" / "config.py",
    ),
    "blocklists": (
        {f.name for f in dataclasses.fields(Feed) if _literal(f.default)},
        ROOT / "blocklists" / "feed.py",
    ),
}


# Same name, another setting: the replay memo's size is not the cache's max_entries.
OTHER_MEANING = {("replay.py", "max_entries")}


def test_no_other_module_restates_a_config_default() -> None:
    """A literal default for a config key outside its dataclass is a second statement
    (tcp_max_clients was 100 in the config and 200 in ServerSettings)."""
    found = []
    for package, (names, home) in SCOPES.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == home:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                    # a part's constructor: `def __init__(self, *, timeout: float = 2.0)`
                    args = node.args
                    pairs = list(zip(args.args[::-1], args.defaults[::-1], strict=False))
                    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults,
                                                     strict=True) if d is not None]
                    found += [
                        f"{path.relative_to(ROOT)}:{node.lineno} {arg.arg}"
                        for arg, default in pairs
                        if arg.arg in names and isinstance(default, ast.Constant)
                        and default.value is not None
                        and (path.name, arg.arg) not in OTHER_MEANING
                    ]
                if (  # a dataclass field `tcp_max_clients: int = 200`
                    isinstance(node, ast.AnnAssign)
                    and isinstance(node.target, ast.Name)
                    and node.target.id in names
                    and isinstance(node.value, ast.Constant)
                    and node.value.value is not None
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.target.id}")
                if (  # `_get(dns, "timeout", 2.0)`, `getattr(config, "log_level", "INFO")`
                    isinstance(node, ast.Call)
                    and len(node.args) == 3
                    and isinstance(node.args[1], ast.Constant)
                    and node.args[1].value in names
                    and isinstance(node.args[2], ast.Constant | ast.Tuple)
                    and not (isinstance(node.args[2], ast.Constant) and node.args[2].value is None)
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.args[1].value}")
    assert found == []


def test_component_settings_take_the_config_defaults() -> None:
    cache, server, dns = CacheSettings(), ServerSettings(), DnsConfig()
    for f in dataclasses.fields(CacheConfig):
        if hasattr(cache, f.name):
            want = getattr(CacheConfig(), f.name)
            got = getattr(cache, f.name)
            assert (tuple(sorted(got)) if f.name == "rebind_allow" else got) == want, f.name
    assert (server.tcp_idle, server.tcp_max_clients) == (dns.tcp_idle, dns.tcp_max_clients)


def _flatten(data: object, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                out.update(_flatten(v, key + "."))
            else:
                out[key] = v
    return out


def test_example_documents_every_key_and_only_real_ones() -> None:
    example = _flatten(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    assert set(example) == set(CONFIG_KEYS)
    feed_keys = {
        line.split()[1]
        for line in EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.startswith("#   ") and len(line.split()) > 2
    }
    assert feed_keys == {f.name for f in dataclasses.fields(Feed)}


def _get(obj: object, path: str) -> object:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_example_key_reaches_the_config() -> None:
    """Each value written in the example is the value in the loaded Config (paths and
    durations made absolute/seconds by the loader are compared after loading both ways)."""
    cfg = load_config(EXAMPLE)
    data = _flatten(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    for key in data:
        assert _get(cfg, key) is not None or data[key] is None, key
    assert cfg.dns.tcp_max_clients == data["dns.tcp_max_clients"]
    assert cfg.dns.cache.max_entries == data["dns.cache.max_entries"]
    assert cfg.dns.cache.max_bytes == data["dns.cache.max_bytes"]
    assert cfg.dns.cache.rebind_allow == ()
    assert len(cfg.feeds) == len(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["feeds"])


def test_cache_and_server_keys_reach_the_running_parts(tmp_path: Path) -> None:
    """dns.cache.* and dns.tcp_* from YAML end up in the cache's and listener's settings
    (max_bytes and rebind_allow used to be read from fields the config did not have)."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "dns:\n"
        "  upstreams: ['192.0.2.1:53']\n"
        "  tcp_idle: 12s\n"
        "  tcp_max_clients: 7\n"
        "  cache:\n"
        "    max_entries: 1234\n"
        "    max_bytes: 2000000\n"
        "    min_ttl: 5\n"
        "    max_ttl: 600\n"
        "    negative_max_ttl: 60\n"
        "    stale_window: 1h\n"
        "    rebind_allow: [Home.Example., 'nas.straße.de']\n",
        encoding="utf-8",
    )
    path.chmod(0o644)
    cfg = load_config(path)
    cache = cache_settings(cfg)
    assert (cache.max_entries, cache.max_bytes, cache.min_ttl, cache.max_ttl) == (
        1234, 2_000_000, 5, 600)
    assert (cache.negative_max_ttl, cache.stale_window) == (60, 3600.0)
    assert cache.rebind_allow == {"home.example", "nas.xn--strae-oqa.de"}
    server = server_settings(cfg)
    assert (server.tcp_idle, server.tcp_max_clients) == (12.0, 7)


WIRING = ("resolver/assembly.py", "resolver/root.py", "resolver/cli.py", "resolver/workers.py",
          "resolver/process.py")


def test_the_wiring_reads_the_typed_config() -> None:
    """The modules that build the parts take a `Config` and read its fields by name (mypy checks
    each one): no parameter typed `object` or `Any`, no `_get`/`getattr` with a fallback (a
    second default, and a typo that reads as the default)."""
    found = []
    for rel in WIRING:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and node.arg == "config":
                annotation = ast.unparse(node.annotation) if node.annotation else "none"
                if annotation != "Config":
                    found.append(f"{rel}:{node.lineno} config: {annotation}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_get", "getattr")
            ):
                found.append(f"{rel}:{node.lineno} {node.func.id}(...)")
    assert found == []
