"""The bottom layer: errors and exit codes, the lazy TensorFlow import, terminal output, and the
cluster this process is part of. Imports nothing else of dlcli."""
