"""timoner.client."""
