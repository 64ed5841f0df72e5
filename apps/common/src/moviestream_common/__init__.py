"""Code shared by the movie-streaming services."""
