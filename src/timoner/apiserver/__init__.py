"""timoner.apiserver."""
