"""The operator's and the newcomer's tools, built on the delivery path.

``check`` (preflight), ``dlq`` and ``replay`` (inspect and replay the
dead-letter topic), ``demo`` with its view and sample events, and the
embedded broker the demo runs on. The service (``customer-sync run``) needs
none of them.
"""
