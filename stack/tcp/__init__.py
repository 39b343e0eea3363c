"""The TCP core (RFC 9293), sans-IO: Connection and the pieces it is built from.
Imports stack.wire and stack.trace only (DESIGN §2).

Modules, from the bottom: seq and clock (arithmetic, units); state, events, errors,
config, timers, tcb (plain data); rtt, congestion/, sendbuf, reassembly, isn (support);
sender and connection (the state machine).  Import what you need from the module that
defines it; this package re-exports nothing, so importing one module stays cheap.
"""
