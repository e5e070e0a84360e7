//! Unit tests of the client state machine (fake clock, no sockets).
