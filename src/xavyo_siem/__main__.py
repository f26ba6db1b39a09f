"""`python -m xavyo_siem` runs the command line."""

from xavyo_siem.cli import main

main()
