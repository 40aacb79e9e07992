"""timoner.api."""
