"""The llama.cpp peer: scripts run with .venv-peer (llama-cpp-python built from source)."""
