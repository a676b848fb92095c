"""``python -m commands`` is the ``doorstep`` command."""

from commands.cli import main

main()
