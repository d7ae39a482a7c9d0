"""totals rules found by mutation testing (tests/MUTATION.md)."""
