"""Diagnostics callbacks (conf/diagnostics, and the monitors of conf/callbacks)."""
