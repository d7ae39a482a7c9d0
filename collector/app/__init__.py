"""The wiring a person starts: the command line, the daemon, its commands, the demo."""
