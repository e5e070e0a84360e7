//! Unit tests of the client proxy state machine (fake clock, no sockets).
