"""Entry points that compose every package: the CLI, the workers, the demo."""
