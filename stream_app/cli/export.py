"""`istream export`: a trained checkpoint -> a verified model bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import click

from stream_app.cli.common import make_settings, reports_errors


@click.command()
@click.option(
    "--model",
    "checkpoint_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Checkpoint directory written by `istream train`.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="New or empty bundle directory.")
@click.option("--int8", is_flag=True, help="Also write a dynamically quantized int8 encoder (for CPU workers).")
@click.option("--opset", type=click.IntRange(14, 21), default=17, show_default=True, help="ONNX opset.")
@click.option(
    "--optimize/--no-optimize",
    default=False,
    show_default=True,
    help="Apply ONNX Runtime's BERT fusions to encoder.onnx offline (measure with `istream bench encoder`).",
)
@click.option("--parent", "parent_version", help="Version it was fine-tuned from (default: from the checkpoint).")
@click.option(
    "--item-precision",
    type=click.Choice(["auto", "float32", "float16"]),
    default="auto",
    show_default=True,
    help="How the item table is stored; auto: float16 from 100,000 items (half the bytes, top-10 recall 0.999 "
    "of float32's), float32 below. Workers rank in float32 either way.",
)
@reports_errors
def export(
    checkpoint_dir: Path,
    out_dir: Path,
    int8: bool,
    opset: int,
    optimize: bool,
    parent_version: str | None,
    item_precision: Literal["auto", "float32", "float16"],
) -> None:
    """Export the comment encoder, interest step and item tower of CHECKPOINT as an ONNX bundle.

    The bundle is signed when ISTREAM_BUNDLE_SIGNING_KEY is set.
    """
    from export.bundle import export_bundle

    key = make_settings().bundle_signing_key
    manifest = export_bundle(
        checkpoint_dir,
        out_dir,
        int8=int8,
        opset=opset,
        optimize=optimize,
        parent_version=parent_version,
        signing_key=key.get_secret_value() if key else None,
        item_precision=item_precision,
    )
    facts = manifest.export
    click.echo(f"bundle {manifest.version} written to {out_dir} ({len(manifest.files)} files, opset {opset})")
    click.echo(
        "parity vs torch (largest difference, relative to each output's scale): "
        f"encoder {facts['encoder_max_rel_diff']:.1e}, step {facts['step_max_rel_diff']:.1e}, "
        f"item tower {facts['item_tower_max_rel_diff']:.1e}"
        + (
            f", int8 encoder cosine to fp32 {facts['int8_cosine_mean']:.4f} (mean, short validation texts)"
            if int8
            else ""
        )
    )
    click.echo(f"signed: {'yes' if key else 'no (ISTREAM_BUNDLE_SIGNING_KEY unset)'}")
