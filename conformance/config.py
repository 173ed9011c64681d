"""The suite's configuration: one frozen dataclass, filled from CLI, then environment, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from spec.clauses import Clause, load_catalogue

ENV_PREFIX = "CHATCONFORM_"
DIALECTS = ("hf", "openai")
REDACTED = "***"
MAX_CONCURRENCY = 64  # requests in flight at once, at most
DEFAULT_BURST = 16  # concurrent tiny requests sent (up to 3 times) to provoke a 429 (headers.retry-after.429)
MAX_BURST = 256
DEFAULT_FUZZ_SHRINK = 20  # requests a fuzz phase may send beyond its fuzz_budget once a case failed
# The largest response body read; a bigger one is cut (and is no complete answer), so memory stays bounded.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MIN_MAX_RESPONSE_BYTES = 1024


# Groups left out of `default`: they need a particular target (reference: one serving SmolLM2-135M-Instruct).
OPT_IN_GROUPS = ("reference",)


def _profiles() -> dict[str, tuple[str, ...]]:
    """`default` selects every group but the opt-in ones; each group name is also a profile of its own."""
    groups = load_catalogue().group_names
    profiles: dict[str, tuple[str, ...]] = {"default": tuple(g for g in groups if g not in OPT_IN_GROUPS)}
    profiles.update({name: (name,) for name in groups})
    return profiles


# profile name -> clause groups it selects
PROFILES: dict[str, tuple[str, ...]] = _profiles()


class ConfigError(ValueError):
    """A configuration value is invalid: the message names the parameter, the rule and the value."""


@dataclass(frozen=True)
class SuiteConfig:
    """Everything a conformance run needs to know about its target and its pacing."""

    base_url: str
    api_key: str | None = None
    model: str | None = None
    dialect: str = "hf"
    profile: str = "default"
    clause_prefixes: tuple[str, ...] = ()
    strict: bool = False
    timeout: float = 30.0
    concurrency: int = 1
    delay: float = 0.0
    seed: int = 1234
    fuzz_budget: int = 60
    fuzz_shrink: int = DEFAULT_FUZZ_SHRINK
    burst: int = DEFAULT_BURST
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    report_dir: Path | None = None
    expect_file: Path | None = None
    # The reference profile (conformance/reference): where the oracle's answers come from, what the target runs.
    reference_url: str | None = None
    reference_file: Path | None = None
    target_weights: str = "q4_1"

    def __post_init__(self) -> None:
        base = self.base_url.strip().rstrip("/")
        base = base.removesuffix("/v1")
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"base_url: must start with http:// or https://, got {self.base_url!r}")
        object.__setattr__(self, "base_url", base)
        if self.dialect not in DIALECTS:
            raise ConfigError(f"dialect: must be one of {', '.join(DIALECTS)}, got {self.dialect!r}")
        if self.profile not in PROFILES:
            raise ConfigError(
                f"profile: must be one of {', '.join(PROFILES)}, got {self.profile!r}"
            )
        for name, low in (("timeout", 0.0), ("delay", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < low or (name == "timeout" and value == 0):
                raise ConfigError(f"{name}: must be a number > 0 (delay >= 0), got {value!r}")
        for name, low, high in (("concurrency", 1, MAX_CONCURRENCY), ("fuzz_budget", 1, None),
                                ("fuzz_shrink", 0, None), ("burst", 0, MAX_BURST),
                                ("max_response_bytes", MIN_MAX_RESPONSE_BYTES, None)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
                rule = f"an integer >= {low}" + (f" and <= {high}" if high else "")
                raise ConfigError(f"{name}: must be {rule}, got {value!r}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed: must be an integer, got {self.seed!r}")
        catalogue = load_catalogue()
        for prefix in self.clause_prefixes:
            if not prefix or not catalogue.select([prefix]):
                raise ConfigError(f"clause: prefix {prefix!r} selects no active clause")

    def selected_clauses(self) -> tuple[Clause, ...]:
        """Active clauses chosen by the profile, narrowed by the ID prefixes (catalogue order)."""
        return select_clauses(self.profile, self.clause_prefixes)

    def to_json(self) -> dict[str, Any]:
        """The effective configuration as JSON, with the API key redacted."""
        data = asdict(self)
        data["api_key"] = REDACTED if self.api_key else None
        data["clause_prefixes"] = list(self.clause_prefixes)
        for key in ("report_dir", "expect_file", "reference_file"):
            data[key] = str(data[key]) if data[key] is not None else None
        return data


def select_clauses(profile: str, prefixes: tuple[str, ...] = ()) -> tuple[Clause, ...]:
    """Active clauses of a profile's groups, narrowed by clause ID prefixes, in catalogue order."""
    if profile not in PROFILES:
        raise ConfigError(f"profile: must be one of {', '.join(PROFILES)}, got {profile!r}")
    catalogue = load_catalogue()
    groups = set(PROFILES[profile])
    chosen = [c for c in catalogue.active() if c.group in groups]
    if prefixes:
        for prefix in prefixes:
            if not prefix or not catalogue.select([prefix]):
                raise ConfigError(f"clause: prefix {prefix!r} selects no active clause")
        by_prefix = {c.id for c in catalogue.select(prefixes)}
        chosen = [c for c in chosen if c.id in by_prefix]
    return tuple(chosen)


_CONVERTERS: dict[str, Any] = {
    "timeout": float, "delay": float, "concurrency": int, "seed": int, "fuzz_budget": int,
    "fuzz_shrink": int, "burst": int, "max_response_bytes": int, "report_dir": Path, "expect_file": Path,
    "reference_file": Path,
}


def _convert(name: str, raw: Any) -> Any:
    if name == "strict":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"strict: must be a boolean (1/0, true/false), got {raw!r}")
    if name == "clause_prefixes":
        if isinstance(raw, str):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return tuple(raw)
    conv = _CONVERTERS.get(name)
    if conv is None or isinstance(raw, conv):
        return raw
    try:
        return conv(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be {conv.__name__}, got {raw!r}") from None


def _env_name(name: str) -> str:
    return ENV_PREFIX + ("CLAUSE" if name == "clause_prefixes" else name.upper())


def load_config(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> SuiteConfig:
    """Build a SuiteConfig: CLI values (not None) win over CHATCONFORM_* variables over defaults."""
    cli = cli or {}
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(SuiteConfig):
        raw = cli.get(f.name)
        if raw is None or (f.name == "clause_prefixes" and not raw) or (f.name == "strict" and raw is False):
            raw = env.get(_env_name(f.name))
        if raw is None:
            continue
        values[f.name] = _convert(f.name, raw)
    if "base_url" not in values:
        raise ConfigError(f"base_url: required (give BASE_URL or set {ENV_PREFIX}BASE_URL)")
    return SuiteConfig(**values)


__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_FUZZ_SHRINK",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DIALECTS",
    "MAX_BURST",
    "MAX_CONCURRENCY",
    "PROFILES",
    "REDACTED",
    "ConfigError",
    "SuiteConfig",
    "load_config",
    "select_clauses",
]
