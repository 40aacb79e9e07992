"""timoner.sim."""
