"""timoner.controllers."""
