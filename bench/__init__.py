"""chatd benchmarks against llama.cpp peers: python -m bench."""
