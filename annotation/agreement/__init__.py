"""Inter-rater agreement: the statistics on plain arrays (statistics) and the report with its per-rater
flags (report)."""
