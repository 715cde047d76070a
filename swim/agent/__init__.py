"""The `swim` agent and its command line, after Serf's.

`swim agent` runs one member in the foreground and serves a control protocol on
loopback (`swim.agent.rpc`); `swim members`, `monitor`, `event`, `leave`, `tags` and
`info` are its clients; `swim demo` runs a local cluster of agents (`swim.agent.cluster`).
"""
