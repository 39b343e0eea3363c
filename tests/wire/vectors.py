"""Real packets for the wire tests, captured from Linux 6.18 with tcpdump.

A kernel client 10.77.0.2:40000 connected to a kernel listener 10.77.0.1:5000 over lo in a
private namespace. On lo the kernel leaves the TCP checksum partial (offload), so the
checksum bytes below are the ones tcpdump -v computed ("incorrect -> 0x7b15"); every other
byte is as captured. tcpdump -nn -v printed:

    10.77.0.2.40000 > 10.77.0.1.5000: Flags [S], seq 1792775970, win 65495,
        options [mss 65495,sackOK,TS val 2880921809 ecr 0,nop,wscale 10], length 0
    10.77.0.1.5000 > 10.77.0.2.40000: Flags [S.], seq 4254408396, ack 1792775971, win 65483,
        options [mss 65495,sackOK,TS val 3942130038 ecr 2880921809,nop,wscale 10], length 0
    10.77.0.2.40000 > 10.77.0.1.5000: Flags [P.], seq 1:7, ack 1, win 64,
        options [nop,nop,TS val 2880921809 ecr 3942130038], length 6
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

CLIENT = IPv4Address("10.77.0.2")
SERVER = IPv4Address("10.77.0.1")

LINUX_SYN = bytes.fromhex(
    "4500003c2c8b40004006f9940a4d00020a4d0001"  # IPv4: id 11403, DF, TTL 64, TCP
    "9c4013886adb972200000000a002ffd77b150000"  # TCP: 40000 > 5000, SYN, doff 10
    "0204ffd7"  # mss 65495
    "0402080aabb760d100000000"  # sackOK, TS val 2880921809 ecr 0
    "0103030a"  # nop, wscale 10
)
LINUX_SYN_ACK = bytes.fromhex(
    "4500003c00004000400626200a4d00010a4d0002"
    "13889c40fd951ecc6adb9723a012ffcb523f0000"
    "0204ffd7"
    "0402080aeaf82176abb760d1"
    "0103030a"
)
LINUX_DATA = bytes.fromhex(
    "4500003a2c8d40004006f9940a4d00020a4d0001"
    "9c4013886adb9723fd951ecd8018004036d40000"
    "0101080aabb760d1eaf82176"  # nop, nop, TS
    "68656c6c6f0a"  # b"hello\n"
)

# The same connection over IPv6 (fd77::2 port 40000 to fd77::1 port 5000, lo); TCP checksum
# from tcpdump ("incorrect -> 0xa2d9"):
#     IP6 (flowlabel 0x6abe2, hlim 64, next-header TCP (6) payload length: 40)
#     fd77::2.40000 > fd77::1.5000: Flags [S], seq 3580363760, win 65476,
#     options [mss 65476,sackOK,TS val 2605812712 ecr 0,nop,wscale 10], length 0
CLIENT6 = IPv6Address("fd77::2")
SERVER6 = IPv6Address("fd77::1")
LINUX_SYN6 = bytes.fromhex(
    "6006abe2"
    "00280640"  # version 6, flow label 0x6abe2; payload 40, TCP, hop limit 64
    "fd770000000000000000000000000002"
    "fd770000000000000000000000000001"
    "9c401388d56803f000000000a002ffc4a2d90000"
    "0204ffc4"
    "0402080a9b518be800000000"
    "0103030a"
)
