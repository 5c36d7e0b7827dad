"""End-to-end tests: real Flask and Django applications served by maitre over sockets."""
