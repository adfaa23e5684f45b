"""Allow `python -m hubblepy.cli`."""

from hubblepy.cli.app import main

main()
