"""safe-trpo: TRPO with CPO cost constraints, audited runs and a review app."""

__version__ = "0.1.0"
