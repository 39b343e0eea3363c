"""Time units. All time in the stack is integer nanoseconds on a monotonic clock
that the caller reads and hands in as `now`. Imports nothing."""

NS = 1
US = 1_000
MS = 1_000_000
SECOND = 1_000_000_000
