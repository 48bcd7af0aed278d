"""A trainer that does nothing: measures launcher overhead."""
