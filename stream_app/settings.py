"""One frozen settings object, built once at start-up and passed down.

Every setting reads ``ISTREAM_<NAME>`` from the environment (the bootstrap servers also
``KAFKA_BOOTSTRAP_SERVERS``); CLI flags override by passing values to ``Settings(...)``.
Nothing below this module reads ``os.environ``. The README table is generated from the
field docs here: ``python -m stream_app.settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ISTREAM_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", populate_by_name=True
    )

    # Kafka connection
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ISTREAM_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, comma separated.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol."
    )
    sasl_mechanism: str | None = Field(None, description="SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: str | None = Field(None, description="SASL password.")
    ssl_ca_location: str | None = Field(None, description="CA bundle used to verify the brokers.")
    ssl_certificate_location: str | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_key_location: str | None = Field(None, description="Client private key (mutual TLS).")

    # Topics
    topic_prefix: str = Field("interest", description="Prefix of every topic name (`<prefix>.events`, ...).")
    partitions: int = Field(8, ge=1, description="Partitions of the topics `istream topics create` makes.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")

    # Local broker
    broker_host: str = Field("127.0.0.1", description="Address the embedded Tansu broker listens on.")
    broker_port: int = Field(9092, ge=1, le=65535, description="Port of the embedded Tansu broker.")
    run_dir: Path = Field(Path("var"), description="Directory for pid files, logs and local state.")

    # Consumers
    session_timeout_ms: int = Field(
        10_000,
        ge=500,
        description="Consumer-group session timeout (ms); on Tansu a group join waits about half of it.",
    )

    def kafka_config(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) client settings for this cluster."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        return conf


def env_name(field: str) -> str:
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return " / ".join(str(c) for c in alias.choices)
    return f"{ENV_PREFIX}{field.upper()}"


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| env | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = "" if info.default is None else f"`{info.default}`"
        rows.append(f"| `{env_name(name)}` | {default} | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
