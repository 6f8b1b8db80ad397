"""Training: losses, schedules, sampling and the loop."""
