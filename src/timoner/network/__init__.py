"""timoner.network."""
