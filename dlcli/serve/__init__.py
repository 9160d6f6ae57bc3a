"""`dlcli serve`: a trained run or an export answering over HTTP, in the protocols clients
already speak (TensorFlow Serving's REST API, which KServe's v1 protocol follows, and Vertex AI's
custom-container contract), with dynamic batching.

The layer sits above training (it finds recipes through `dlcli.training.registry`) and below the
CLI. Its modules, bottom up:

  model.py     the served model: found and checked before the port opens, loaded after; a
               request's instances to a batch (each recipe's `read_instance`, the function
               `dlcli predict` reads files with) and outputs to rows (the recipe's `describe`)
  batcher.py   concurrent requests gathered into one model call (max batch, timeout)
  metrics.py   Prometheus counters and histograms
  protocol.py  uvicorn's HTTP protocol with deadlines for slow clients and a header budget
  app.py       the routes (Starlette), request bodies, JSON errors, the access log
  server.py    listening, workers (one process each), signals and the drain

Only `dlcli/cli/commands/serve.py` imports it, inside the command: Starlette, uvicorn and
TensorFlow stay out of `dlcli --help`.
"""
