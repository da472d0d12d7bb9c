"""The live dashboard (`hacluster dashboard`): a local aiohttp server that watches a running cluster through
the masters' HTTP endpoints and Toxiproxy's REST API, and pushes what it sees to a dependency-free page.

- `collect`: the collector (polls `/debug/raft` and `/metrics`, lists and watches pods and nodes, reads
  Toxiproxy's proxies and the fault log) and the snapshots it publishes;
- `links`, `rates`, `pods`, `flow`: pure functions that turn what was read into what the page shows;
- `controls`: the contract of the fault controls (the CLI wires in `chaos/`, which this package never
  imports) and the pod templates;
- `server`: the HTTP server, its one-time token and the WebSocket that pushes snapshots;
- `static/`: the page (HTML, CSS, plain JS and SVG; nothing is loaded from elsewhere).
"""
