import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from stream_app.settings import Settings, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith(("ISTREAM_", "KAFKA_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults(clean_env):
    settings = Settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka_config() == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "PLAINTEXT"}


def test_env_overrides_and_flags_override_env(clean_env):
    clean_env.setenv("ISTREAM_PARTITIONS", "3")
    clean_env.setenv("ISTREAM_TOPIC_PREFIX", "shop")
    assert (Settings().partitions, Settings().topic_prefix) == (3, "shop")
    assert Settings(partitions=5).partitions == 5


@pytest.mark.parametrize("name", ["KAFKA_BOOTSTRAP_SERVERS", "ISTREAM_BOOTSTRAP_SERVERS"])
def test_bootstrap_from_either_variable(clean_env, name):
    clean_env.setenv(name, "kafka-1:9093,kafka-2:9093")
    assert Settings().kafka_config()["bootstrap.servers"] == "kafka-1:9093,kafka-2:9093"


def test_sasl_ssl_settings_reach_the_client_config(clean_env):
    clean_env.setenv("ISTREAM_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("ISTREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    clean_env.setenv("ISTREAM_SASL_USERNAME", "svc")
    clean_env.setenv("ISTREAM_SASL_PASSWORD", "secret")
    clean_env.setenv("ISTREAM_SSL_CA_LOCATION", "/etc/ca.pem")
    conf = Settings().kafka_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert (conf["sasl.mechanism"], conf["sasl.username"], conf["sasl.password"]) == ("SCRAM-SHA-512", "svc", "secret")
    assert conf["ssl.ca.location"] == "/etc/ca.pem"


def test_bad_values_are_refused(clean_env):
    clean_env.setenv("ISTREAM_PARTITIONS", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_frozen(clean_env):
    with pytest.raises(ValidationError):
        Settings().partitions = 2


def test_readme_configuration_table_is_generated_from_the_settings():
    text = README.read_text()
    match = re.search(r"<!-- settings:begin -->\n(.*?)\n<!-- settings:end -->", text, re.S)
    assert match, "README.md lacks the <!-- settings:begin/end --> block"
    assert match.group(1).strip() == markdown_table().strip(), "regenerate it with: python -m stream_app.settings"
