"""Comparison annotation: projects, pairs, the assignment engine and judgments."""
