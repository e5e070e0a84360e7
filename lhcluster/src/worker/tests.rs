//! Unit tests of the worker state machine (fake clock, no sockets).
