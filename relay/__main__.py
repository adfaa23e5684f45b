"""``python -m relay`` runs hubble-relay (see :mod:`relay.main`)."""

from relay.main import main

main()
