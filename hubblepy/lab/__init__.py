"""The one-machine lab: pods as network namespaces, the eBPF datapath, the node agent and a relay.

* :mod:`.scenario`: the scenario format (docs/scenario-format.md) and the default payments scenario;
* :mod:`.netns`: namespaces, veths, routes, resolv.conf and CA bundles with pyroute2, and the
  leftover sweep;
* :mod:`.servers`: the HTTP(S), TCP echo and DNS servers pods and the world run, and the world's
  resolver (:mod:`.worlddns`); :mod:`.tls` is the lab CA;
* :mod:`.node`: the background lab node process, a coordinator over :mod:`.pods`, :mod:`.clusterdns`,
  :mod:`.processes`, :mod:`.launch`, :mod:`.policysync`, :mod:`.agent` and the control socket's
  server (:mod:`.control`, whose client the CLI uses); :mod:`.state` says where its state lives;
* :mod:`.source`: the observer flow sources (the datapath's perf ring, the proxies' access log);
* :mod:`.errors`: :class:`~hubblepy.lab.errors.LabError`, the base of every lab error.

The CLI is :mod:`hubblepy.cli.lab` (``hubble lab ...``).
"""
