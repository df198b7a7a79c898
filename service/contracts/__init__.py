"""The documents the service promises: ``schemas/`` and the README's configuration table.

``events`` models the two ends the service owns (the input event, the
dead-letter headers); ``schemas`` renders them and the API's wire models as
JSON Schema; ``docgen`` renders the settings as the README's table. Tests
fail when a committed document drifts from the code.
"""
