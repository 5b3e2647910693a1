"""Portfolio environment, price loading and backtest accounting (``SafeTRPO/Portfolio-v0``)."""

from envs.portfolio.env import PortfolioConfig, PortfolioEnv, PortfolioVectorEnv
from envs.portfolio.info import ENV_INFO
from envs.portfolio.prices import load_prices, read_panel, select_window, validate_panel
from envs.portfolio.synthetic import SyntheticConfig, synthetic_prices
from envs.portfolio.universe import Universe, build_universe

__all__ = ["ENV_INFO", "PortfolioConfig", "PortfolioEnv", "PortfolioVectorEnv", "SyntheticConfig",
           "Universe", "build_universe", "load_prices", "read_panel", "select_window",
           "synthetic_prices", "validate_panel"]
