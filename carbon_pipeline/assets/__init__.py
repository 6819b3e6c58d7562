"""Assets by stage: sources (Prometheus, Carbon Intensity API) -> host usage -> scope facts."""
