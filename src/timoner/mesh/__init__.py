"""timoner.mesh."""
