"""`python -m kscore` is the `kscore` command."""

from kscore.cli import main

main()
