"""Test-only helpers that ship with the package (fault injection); never active unless asked for."""
