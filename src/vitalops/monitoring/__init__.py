"""Monitoring: metric definitions with stable ids, drift statistics, each version's training
reference, the aggregation engine over the prediction log and the lake, and the stored time series
of results (``monitoring.results``) that alerts read. Imports nothing heavy at import time."""
