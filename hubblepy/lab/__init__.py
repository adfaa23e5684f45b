"""The one-machine lab: pods as network namespaces, the eBPF datapath, the node agent and a relay.

* :mod:`.scenario`: the scenario format (docs/scenario-format.md) and the default payments scenario;
* :mod:`.netns`: namespaces, veths, routes and resolv.conf with pyroute2, and the leftover sweep;
* :mod:`.servers`: the HTTP, TCP echo and DNS servers pods run;
* :mod:`.node`: the background lab node process (topology + datapath + policy + observer + relay +
  control socket); :mod:`.control` talks to it; :mod:`.state` says where its state lives;
* :mod:`.source`: the datapath as an observer flow source.

The CLI is :mod:`hubblepy.cli.lab` (``hubble lab ...``).
"""
