"""The scheduler: the one loop that moves jobs through their states on an executor."""
