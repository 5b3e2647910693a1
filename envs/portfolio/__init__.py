"""Portfolio environment, price loading and backtest accounting (``SafeTRPO/Portfolio-v0``).

``env`` is the Gymnasium environment (daily long-only allocation, costs for breaches of
the drawdown, concentration, turnover and CVaR limits) and its native vector env; ``prices``
reads and validates a price file (any CSV of dates and closes, treated as untrusted);
``synthetic`` draws price panels for tests; ``accounting`` holds the book-keeping shared with
the backtest; ``baselines`` the equal-weight, buy-and-hold, minimum-variance and mean-variance
portfolios (cvxpy). Imports pandas, and from safe-trpo only ``safe_trpo.errors``; ``import
envs`` alone does not load this package.
"""

from envs.portfolio.env import PortfolioConfig, PortfolioEnv, PortfolioVectorEnv
from envs.portfolio.info import ENV_INFO
from envs.portfolio.prices import load_prices, read_panel, select_window, validate_panel
from envs.portfolio.synthetic import SyntheticConfig, synthetic_prices
from envs.portfolio.universe import Universe, build_universe

__all__ = ["ENV_INFO", "PortfolioConfig", "PortfolioEnv", "PortfolioVectorEnv", "SyntheticConfig",
           "Universe", "build_universe", "load_prices", "read_panel", "select_window",
           "synthetic_prices", "validate_panel"]
