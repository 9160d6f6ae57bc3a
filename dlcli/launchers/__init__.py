"""Adapters that start dlcli's unchanged training on a cluster engine that places the workers
itself (Ray); the engine hands each worker its TF_CONFIG and restarts them, dlcli's resume
continues the run. Engines that only describe the cluster (TF_CONFIG, Vertex AI's
CLUSTER_SPEC, SLURM_*) need no adapter: dlcli/core/cluster.py reads them."""
