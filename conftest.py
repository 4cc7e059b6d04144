"""Root conftest: makes the real-server fixtures (tests/servers.py) available to every test."""
pytest_plugins = ["tests.servers"]
