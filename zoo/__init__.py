"""colorization-zoo: a model zoo and benchmarking harness for automatic image colorization."""
