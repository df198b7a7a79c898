"""The Gameball edge: the Batch Customer API's client, its wire models, and a local simulator.

The client (``client``) and the models (``models``) are all the service
knows of the API; ``simulator`` imitates the API for the demo, the tests and
the benchmark. Nothing here imports the delivery path.
"""
