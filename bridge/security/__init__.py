"""Who may do what on a server, enforced by `bridge guard`, with a hash-chained audit trail and recordings."""
