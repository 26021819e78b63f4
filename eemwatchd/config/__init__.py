"""The configuration: the model (``model``), reading the file (``file``), validating and loading (``load``)."""

from eemwatchd.config.file import MAX_CONFIG_BYTES
from eemwatchd.config.load import LoadedConfig, load_config, parse_config
from eemwatchd.config.model import (
    AccountConfig,
    AlertConfig,
    Config,
    Duration,
    MetricsConfig,
    PolicyConfig,
    PrestageFile,
    RouterConfig,
    Secret,
    ServerConfig,
    Timeouts,
    human_duration,
    parse_duration,
    window_problems,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "AccountConfig",
    "AlertConfig",
    "Config",
    "Duration",
    "LoadedConfig",
    "MetricsConfig",
    "PolicyConfig",
    "PrestageFile",
    "RouterConfig",
    "Secret",
    "ServerConfig",
    "Timeouts",
    "human_duration",
    "load_config",
    "parse_config",
    "parse_duration",
    "window_problems",
]
