"""Quality and risk signals: evaluation on the user's data, diagnostics, drift and reports."""
