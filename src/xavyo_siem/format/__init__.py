"""Record formats: CEF, RFC 5424 syslog, JSON lines and CSV, as pure functions."""
