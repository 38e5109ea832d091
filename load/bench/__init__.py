"""`waitroom bench`: the hot paths measured side by side against a plain Starlette endpoint."""
