"""The run report: figures (matplotlib) and the self-contained HTML page."""
