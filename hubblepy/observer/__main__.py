"""``python -m hubblepy.observer`` runs `hubble agent` (see :mod:`hubblepy.observer.agent`)."""

from hubblepy.observer.agent import main

main()
