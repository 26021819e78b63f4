"""The pure core: certificate and chain model, IOS text formats, parsers, planner. No I/O here."""
