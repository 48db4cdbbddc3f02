"""Events: what watchers are told of a run, from the transaction that writes it to the stream.

The outbox stores each event with the change it reports and numbers it in commit order; the
broadcaster hands committed events to this server's watchers; on PostgreSQL the replica bridge
brings every replica's events to them; the watch logic replays stored events after a cursor and
follows live ones. Events carry domain values; the edge's codec (convert.events) encodes each
one once, when it commits, and the watch streams send those bytes as they are.
"""
