"""Alerts: built-in and users' own rules over the GPUs' readings."""
