"""The data contract: names (schema), updates -> points (normalize), line protocol."""
