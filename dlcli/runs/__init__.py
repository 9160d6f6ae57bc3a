"""The run record and the run folder: config.json's schema, the files a run keeps, locks, local
and remote (gs://) storage, and the container's volume owner."""
