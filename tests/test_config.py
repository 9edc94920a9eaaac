import copy
from pathlib import Path

import pytest
import yaml

from imitate.config import ConfigError, config_hash, load_config, parse_settings, validate_config

ROOT = Path(__file__).resolve().parents[1]


def test_default_config_is_valid():
    config = load_config(ROOT / "config.yaml")
    assert config["data"]["source"] == "demo"


def test_typo_and_bad_value_are_named(tmp_path):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    bad = copy.deepcopy(config)
    bad["shards"]["imge_size"] = 3
    bad["embed"]["pooling"] = "max"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "shards" in str(err.value) and "imge_size" in str(err.value)
    assert "embed/pooling" in str(err.value)


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_parse_settings_prefers_json_and_reads_a_block():
    assert parse_settings('{"x": 1}', None, "embed") == {"x": 1}
    assert parse_settings(None, str(ROOT / "config.yaml"), "embed")["pooling"] == "cls"
    with pytest.raises(ConfigError):
        parse_settings("[1]", None, "embed")
    with pytest.raises(ConfigError):
        parse_settings(None, None, "embed")


def test_validate_config_rejects_missing_block():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    del config["model"]
    with pytest.raises(ConfigError, match="model"):
        validate_config(config)
