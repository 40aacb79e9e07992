"""timoner.cli."""
