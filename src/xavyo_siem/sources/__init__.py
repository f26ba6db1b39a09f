"""Sources: tables of the identity provider's own database, tailed into the store.

`manage` adds, lists and removes them (the connection string sealed, the peer table
checked), `peer` connects to the peer and reads its table in an order that never skips a
row, `mapping` makes a row the JSON form of an event, and `tail` is the worker's part: one
task per source, each page of events stored with the source's cursor in one transaction.
See docs/sources.md.

Nothing is imported here: the driver of a source's peer (psycopg, about 25 MB resident)
loads only in a process that manages or tails a source, not in every worker.
"""
