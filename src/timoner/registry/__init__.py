"""timoner.registry."""
