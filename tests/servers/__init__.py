"""Real model-registry servers on loopback, one module each, for the registry stage.

Each starts once, on a free 127.0.0.1 port, waits until it answers, logs to
build/test-report/servers/NAME.log, and is stopped by its process id.
"""
