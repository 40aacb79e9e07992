"""timoner.dashboard."""
