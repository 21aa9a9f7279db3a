"""A command-line client of the service's HTTP API (no Django; urllib3 and tqdm)."""
