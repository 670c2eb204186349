"""``python -m workers.cli``: the ``workers`` command without the console script."""

from workers.cli import main

main(prog_name="workers")
