"""timoner.node."""
