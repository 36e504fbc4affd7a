"""chatd: the OpenAI Chat Completions API, served from a local model."""

__version__ = "0.1.0"
