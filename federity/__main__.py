"""``python -m federity``: the command line."""

from federity.cli import main

main()
