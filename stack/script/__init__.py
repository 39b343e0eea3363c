"""packetdrill scripts against a TCP: the language (parser, model), the runner core that
checks a script's events against a target, and the virtual-clock target over pytcp's
sans-IO Host. Sans-IO: imports stack.wire, stack.tcp, stack.host and stack.trace; the
targets that need sockets, TUNs and real time live in pytcpcli/scripting/."""
