"""What the tests share that is not a fixture: the fake Clerk, a receiver on loopback HTTP,
and short forms of the one write path."""
