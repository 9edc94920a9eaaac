"""Loading and validating the pipeline configuration (config.yaml against the JSON schema)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CHECKOUT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = CHECKOUT / "workflow" / "schemas" / "config.schema.yaml"
# The demo's configuration: used only when no config file is given (never merged under a real one).
DEMO_CONFIG = CHECKOUT / "config.yaml"
# pretrain: keys that say how many cores the job gets, not what it computes: never a rerun, never read
# by the training loop
PRETRAIN_SCHEDULING_KEYS = ("threads",)


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or does not match the schema."""


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Read the config JSON schema (YAML-encoded)."""
    if not path.is_file():
        raise ConfigError(f"config schema not found at {path}: use a checkout (pip install -e .)")
    return yaml.safe_load(path.read_text())


def validate_config(config: Mapping[str, Any], source: str = "config") -> None:
    """Raise :class:`ConfigError` naming ``source`` and the offending key if ``config`` breaks the schema."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]
        raise ConfigError(f"{source} does not match {SCHEMA_PATH.name}:\n" + "\n".join(lines))


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    config = _read_yaml(path)
    validate_config(config, str(path))
    return config


def merge_config(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into ``base`` in place as Snakemake merges config files: mappings key by key."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = value
    return base


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"config {path} is not a mapping")
    return config


def load_run_config(configfiles: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The configuration a workflow run uses: ``configfiles`` merged in order, or the demo's when none.

    Exactly what ``snakemake [--configfile F ...]`` resolves: the demo's ``config.yaml`` is never the
    base of a run that names its own files (so a real config cannot inherit a demo value).
    """
    paths = [Path(p) for p in configfiles] or [DEMO_CONFIG]
    config: dict[str, Any] = {}
    for path in paths:
        merge_config(config, _read_yaml(path))
    validate_config(config, " + ".join(str(p) for p in paths))
    return config


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form every config hash is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(value: Any) -> str:
    """sha256 of :func:`canonical_json` of ``value`` (a whole config or one stage's block)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def parse_settings(text: str | None, config_path: str | None, block: str) -> dict[str, Any]:
    """The settings a stage runs with: ``--settings`` JSON if given, else ``block`` of ``--config``."""
    if text:
        try:
            settings = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--settings is not valid JSON: {exc}") from exc
        if not isinstance(settings, dict):
            raise ConfigError("--settings must be a JSON object")
        return settings
    if config_path:
        config = load_config(config_path)
        return dict(config[block])
    raise ConfigError(f"give --settings JSON or --config FILE for the {block!r} settings")
