"""Transports: syslog TCP/TLS/UDP, webhook, Splunk HEC and file, behind one interface."""
