"""Person tracking across video frames."""
