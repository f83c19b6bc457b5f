"""`python -m nudger.cli`."""

from nudger.cli import main

main()
