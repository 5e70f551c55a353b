"""interest-stream: streaming, real-time user-interest updates for recommender systems."""

__version__ = "0.1.0"
