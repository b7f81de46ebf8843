"""The digest pipeline's building blocks: sources, shortlist, ranking, analysis and rendering."""
