"""Services: the use cases behind the API and the CLI (jobs, models, packages, …)."""
