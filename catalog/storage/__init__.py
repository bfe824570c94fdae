"""Where asset files live: storage keys and the local-folder storage."""
