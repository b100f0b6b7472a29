"""``federity export``: a commit's model as ONNX, safetensors, or the framework's own format."""

from __future__ import annotations

from pathlib import Path

import click

from federity.cli import FederityCommand, emit, open_repo, show_repository_code
from federity.errors import ConfigError
from federity.repo.export import FORMATS


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(side) for side in text.split(","))
    except ValueError:
        raise ConfigError(f"--input-shape {text!r} is not a comma-separated list of integers",
                          "give one example's shape, e.g. 3,32,32") from None


@click.command(cls=FederityCommand)
@click.argument("rev", default="HEAD")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True,
              help="onnx (checked against the framework with onnxruntime), safetensors (the weights), torch "
                   "(a torch.export program) or keras (a .keras file).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The file to write (must not exist).")
@click.option("--input-shape", help="One example's shape, e.g. 3,32,32, when the model's arguments do not say.")
def export(rev: str, fmt: str, out: Path, input_shape: str | None) -> None:
    """Write the model at REV for use outside Federity."""
    repo = open_repo()
    if fmt != "safetensors":
        show_repository_code(repo, rev)  # building the model runs the repository's own builder, if it has one
    result = repo.export(rev, fmt, out, _shape(input_shape))
    checked = (f" (onnxruntime's outputs are within {result.onnx_max_abs_diff:.2g} of the framework's on a sample "
               f"batch of shape {'x'.join(map(str, result.sample_shape or ()))})"
               if result.onnx_max_abs_diff is not None else "")
    emit(result.to_json(), f"wrote {result.path} ({fmt}, commit {result.commit[:12]}){checked}")
