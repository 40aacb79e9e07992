"""timoner.testing."""
