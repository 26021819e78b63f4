"""`eemwatchd run`: the schedule, signals and reloads, the status model, the HTTP endpoint and status page."""
