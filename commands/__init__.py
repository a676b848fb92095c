"""Entry points that compose every package: the ``doorstep`` command line, the worker, the demo."""
