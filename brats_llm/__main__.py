"""`python -m brats_llm` runs the command line (as the `brats-llm` script does)."""

from brats_llm.cli import main

main()
