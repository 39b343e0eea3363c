"""pytcp's userspace TCP/IP stack. Usable without click; see DESIGN.md §2 for its layers."""
