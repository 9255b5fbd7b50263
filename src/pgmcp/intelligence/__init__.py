"""Database intelligence without I/O: candidate indexes from parse trees (:mod:`.candidates`)."""
