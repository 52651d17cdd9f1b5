"""The ML predictor: causal features, look-ahead labels, models and walk-forward training."""
