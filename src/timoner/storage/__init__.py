"""timoner.storage."""
