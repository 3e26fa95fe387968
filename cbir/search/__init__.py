"""Search features on top of a collection: exhaustive cosine ranking, query expansion and DBA."""
