"""End to end: the reconcile service over the lab, onboarding, the daemon and the CLI as processes, sharding,
a real Prometheus, the status page in Chromium, the Dockerfile and the systemd units."""
