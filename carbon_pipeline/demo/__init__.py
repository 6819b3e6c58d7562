"""Local stand-ins for the outside systems, for the demo, the tests and the benchmark: a
generated fleet with known CPU seconds, a real Prometheus loaded with its history, a local
server speaking the Carbon Intensity API's contract, and the registry's seed files."""
