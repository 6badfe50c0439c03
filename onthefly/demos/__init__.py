"""Small, real models and data for examples, tests and bug reports."""
