"""The process's Prometheus registry: every module that counts something registers here."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, disable_created_metrics

# a `_created` gauge per counter and histogram doubles the series and no dashboard reads them
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
