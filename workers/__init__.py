"""Worker processes: what runs the workflows and activities, and `autarky up`'s embedded stack."""
