"""The shell analysis: commands parsed into programs and checked for destructive forms (PB4xx)."""
