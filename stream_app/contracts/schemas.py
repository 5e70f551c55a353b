"""JSON Schema files generated from the record structs.

``python -m stream_app.contracts.schemas --write`` regenerates ``schemas/*.json``;
``--check`` exits non-zero when the checked-in files differ from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgspec

from stream_app.contracts.codec import MAX_DEPTH, MAX_RECORD_BYTES
from stream_app.contracts.records import RECORDS

SCHEMA_DIR = Path(__file__).parent / "schemas"
# What the decoders enforce beyond the fields' own bounds (JSON Schema cannot say it in keywords).
BOUNDS = (
    f"A record is at most {MAX_RECORD_BYTES} bytes of UTF-8 JSON nested at most {MAX_DEPTH} levels deep "
    "(unknown fields count too); NaN, infinity and numbers outside a field's bounds are rejected."
)


def _schema(name: str, cls: type[msgspec.Struct]) -> dict:
    schema = msgspec.json.schema(cls)
    version = cls.SCHEMA_VERSION  # type: ignore[attr-defined]
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"interest-stream/{name}.v{version}.json",
        "title": f"{cls.__name__} v{version}",
        "$comment": BOUNDS,
        **schema,
    }
    if name == "event":
        # Cross-field rule that msgspec checks in Event.__post_init__.
        defs = schema["$defs"]["Event"]
        defs["if"] = {"properties": {"type": {"const": "comment"}}, "required": ["type"]}
        defs["then"] = {"required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}}
    return schema


def rendered() -> dict[str, str]:
    """File name -> JSON text of every schema."""
    out = {}
    for name, cls in RECORDS.items():
        version = cls.SCHEMA_VERSION  # type: ignore[attr-defined]
        out[f"{name}.v{version}.json"] = json.dumps(_schema(name, cls), indent=2, sort_keys=True) + "\n"
    return out


def drift() -> list[str]:
    """Names of schema files that are missing or differ from the code."""
    return [
        name
        for name, text in rendered().items()
        if not (SCHEMA_DIR / name).exists() or (SCHEMA_DIR / name).read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true")
    group.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.write:
        SCHEMA_DIR.mkdir(exist_ok=True)
        for name, text in rendered().items():
            (SCHEMA_DIR / name).write_text(text)
        return 0
    stale = drift()
    if stale:
        print(f"schemas out of date: {', '.join(stale)}; run python -m stream_app.contracts.schemas --write")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
