"""One module per `dlcli` command."""
