"""ZeroMQ transport shared by the sampler, the writer (sync loop) and the web process (async loop).

- curve: CURVE keys, secured sockets and the hub's gate of accepted samplers.
- sockets: the hub side's socket set-up (SUB for ticks or status, DEALER for replays).
- relink: when libzmq dropped a connection for good, and connecting to it again.
- wakeup: a SIGTERM/SIGINT flag that wakes a zmq.Poller.
- keygen: the `pycudawatch-keygen` command.
"""
