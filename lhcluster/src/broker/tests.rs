//! Unit tests of the broker state machine (fake clock, no sockets).
