"""The top layer: the Typer app (`app`), shared options, shell completion, one module per
command in `commands/`. Nothing here imports TensorFlow at start-up."""
