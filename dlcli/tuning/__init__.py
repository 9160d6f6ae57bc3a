"""Hyperparameter search: the search space and objective (`hypertune`), the Optuna study and
its trials (`study`); `dlcli tune` only wires them to the command line."""
