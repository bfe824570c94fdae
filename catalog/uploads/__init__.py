"""Upload sets: their records, the multipart and tus protocols, and their routes."""
