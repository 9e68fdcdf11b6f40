"""The project's local Golem network: a yagna-compatible REST server with simulated providers.

Public face: `LocalNetwork`, `LocalNetConfig`, `load_config`, `parse_config`, `ConfigError`.
Used by tests, demos and benchmarks; the operator itself never imports it.
"""

from golem_operator.localnet.config import ConfigError, LocalNetConfig, load_config, parse_config
from golem_operator.localnet.server import LocalNetwork

__all__ = ["ConfigError", "LocalNetConfig", "LocalNetwork", "load_config", "parse_config"]
