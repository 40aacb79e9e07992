"""timoner.scheduler."""
